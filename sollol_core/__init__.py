"""SOLLOL core: everything that works without a screen. Never imports textual."""

__version__ = "1.0.0"

from .config import ConfigError, RoutingWeights, SollolConfig, load_config  # noqa: E402
from .service import SOLLOL, StartupError  # noqa: E402

SOLLOLConfig = SollolConfig  # the name the original API used

__all__ = ["SOLLOL", "SOLLOLConfig", "SollolConfig", "RoutingWeights", "ConfigError", "StartupError",
           "load_config", "__version__"]
