"""SOLLOL core: everything that works without a screen. Never imports textual."""

__version__ = "1.0.0"

from .config import RoutingWeights, SollolConfig, load_config  # noqa: E402
from .errors import ConfigError, SollolError, StartupError  # noqa: E402
from .service import SOLLOL  # noqa: E402

SOLLOLConfig = SollolConfig  # the name the original API used

__all__ = ["SOLLOL", "SOLLOLConfig", "SollolConfig", "RoutingWeights", "ConfigError", "SollolError", "StartupError",
           "load_config", "__version__"]
