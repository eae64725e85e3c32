"""Secrets come from files: read one, bounded, with one clear line for what is wrong with it."""

from __future__ import annotations

from connectors.core.errors import ConfigError

MAX_SECRET_BYTES = 64 * 1024  # a path to /dev/zero or a log file is refused, not read whole


def read_secret(variable: str, path: str) -> str:
    """The text of a secret file, without its trailing newline."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{variable}={path!r}: cannot read the file: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(f"{variable}={path!r}: larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}={path!r}: not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{variable}={path!r}: the file is empty")
    return text
