"""ferry's version, as the User-Agent and `--version` show it."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("ferry")
except PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.0.0"

USER_AGENT = f"ferry/{VERSION}"
