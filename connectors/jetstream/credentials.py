"""Turn the settings' secret files and TLS files into nats-py connect options.

Files are read when connecting (so a rotated secret is used on the next start), bounded in
size, with a trailing newline ignored. A problem is a `ConfigError` naming the variable and the
path, never the file's content.
"""

from __future__ import annotations

import ssl
from typing import Any

import nkeys

from connectors.core.errors import ConfigError
from connectors.core.secrets import read_secret
from connectors.jetstream.settings import NatsSettings

_CREDS_MARKERS = ("BEGIN NATS USER JWT", "BEGIN USER NKEY SEED")


def auth_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py options for the one authentication method set (none: an empty dict)."""
    if settings.nats_token_file:
        return {"token": read_secret("nats_token_file", settings.nats_token_file)}
    if settings.nats_user_file:
        return {
            "user": read_secret("nats_user_file", settings.nats_user_file),
            "password": read_secret("nats_password_file", settings.nats_password_file),
        }
    if settings.nats_nkey_seed_file:
        seed = read_secret("nats_nkey_seed_file", settings.nats_nkey_seed_file).strip()
        try:
            nkeys.from_seed(bytearray(seed.encode()))
        except Exception:  # nkeys raises several unrelated types for a bad seed
            raise ConfigError(
                f"nats_nkey_seed_file={settings.nats_nkey_seed_file!r}: not an NKey seed"
            ) from None
        return {"nkeys_seed_str": seed}
    if settings.nats_credentials_file:
        path = settings.nats_credentials_file
        text = read_secret("nats_credentials_file", path)
        if not all(marker in text for marker in _CREDS_MARKERS):
            raise ConfigError(
                f"nats_credentials_file={path!r}: not a .creds file (a user JWT and NKey seed)"
            )
        return {"user_credentials": path}
    return {}


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """A client TLS context when TLS files are set or a server URL asks for TLS."""
    wants_tls = any(s.startswith(("tls://", "wss://")) for s in settings.servers)
    if not (wants_tls or settings.nats_tls_ca_file or settings.nats_tls_cert_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.nats_tls_ca_file:
        path = settings.nats_tls_ca_file
        try:
            context.load_verify_locations(cafile=path)
        except OSError as exc:
            raise ConfigError(f"nats_tls_ca_file={path!r}: cannot read: {exc.strerror}") from None
        except ssl.SSLError:
            raise ConfigError(f"nats_tls_ca_file={path!r}: not a PEM certificate") from None
    if settings.nats_tls_cert_file:
        cert, key = settings.nats_tls_cert_file, settings.nats_tls_key_file
        try:
            context.load_cert_chain(cert, key)
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                raise ConfigError(
                    f"nats_tls_cert_file={cert!r}, nats_tls_key_file={key!r}:"
                    " not a PEM certificate and its private key"
                ) from None
            raise ConfigError(
                f"nats_tls_cert_file={cert!r} or nats_tls_key_file={key!r}: cannot read:"
                f" {exc.strerror}"
            ) from None
    return context


def check_files(settings: NatsSettings) -> None:
    """Read every secret and TLS file now (ConfigError if one cannot be used), so a process
    that does other start-up work before connecting reports a bad file first, in one line."""
    auth_options(settings)
    tls_context(settings)
