"""ferry's own exceptions; vendor exceptions are translated into these at the edge."""


class FerryError(Exception):
    """Base of every error ferry raises on purpose."""


class ConfigError(FerryError):
    """A bad configuration value: the process prints one line and exits 2."""


class StartupError(FerryError):
    """A dependency was unreachable at start-up: the process prints one line and exits 2."""


class DecodeError(FerryError):
    """A message could not be decoded; it is dead-lettered with this reason."""


class CallbackRefused(FerryError):
    """A callback URL is not allowed by the callback policy."""
