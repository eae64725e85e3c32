"""Secrets come from files: read one, bounded, with one clear line for what is wrong with it."""

from __future__ import annotations

from connectors.core.errors import ConfigError

MAX_SECRET_BYTES = 64 * 1024  # a path to /dev/zero or a log file is refused, not read whole


class EmptySecret(ValueError):
    """The file holds nothing but white space."""


def secret_text(path: str) -> str:
    """The text of a secret file, without its trailing newline. OSError if it cannot be read,
    ValueError saying why its content is no secret (too large, not UTF-8, empty)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if not text.strip():
        raise EmptySecret("the file is empty")
    return text


def read_secret(variable: str, path: str) -> str:
    """`secret_text`, any problem a ConfigError naming the setting."""
    try:
        return secret_text(path)
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigError(f"{variable}={path!r}: cannot read the file: {why}") from None
    except ValueError as exc:
        raise ConfigError(f"{variable}={path!r}: {exc}") from None
