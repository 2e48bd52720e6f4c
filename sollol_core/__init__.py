"""SOLLOL core: everything that works without a screen. Never imports textual."""

from .config import RoutingWeights, SollolConfig, load_config
from .errors import ConfigError, SollolError, StartupError
from .service import SOLLOL
from .version import __version__

SOLLOLConfig = SollolConfig  # the name the original API used

__all__ = ["SOLLOL", "SOLLOLConfig", "SollolConfig", "RoutingWeights", "ConfigError", "SollolError", "StartupError",
           "load_config", "__version__"]
