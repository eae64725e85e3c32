"""The one pooled HTTP client a process uses to reach its gateway."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import aiohttp

from connectors.core.config import GatewaySettings
from connectors.core.errors import ConfigError
from connectors.core.http1 import Http1Client
from connectors.core.secrets import EmptySecret, secret_text

log = logging.getLogger(__name__)


def read_basic_auth(secret_mount_path: str) -> str:
    """The `Authorization` value for the credentials in `basic-auth-user` and
    `basic-auth-password` (encoded as UTF-8, as Go's SetBasicAuth sends them)."""
    folder = Path(secret_mount_path)
    texts = []
    for name in ("basic-auth-user", "basic-auth-password"):
        try:
            texts.append(secret_text(str(folder / name)).strip())
        except OSError as exc:
            raise ConfigError(
                f"basic_auth=true but the credentials could not be read from {folder}: "
                f"{exc.strerror or exc}"
            ) from None
        except EmptySecret:
            raise ConfigError(f"basic_auth=true but {folder / name} is empty") from None
        except ValueError as exc:
            raise ConfigError(f"basic_auth=true but {folder / name} is refused: {exc}") from None
    user, password = texts
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class GatewayClient:
    """The process's way to its gateway, sized for `max_inflight` calls.

    Invocations, made once per message, go through the lean `http` client; the rare calls
    (the topic map) through an aiohttp `session`. The gateway's admin credentials
    (`basic_auth`) are for its management API alone: `system_get` sends them, and nothing
    else does, so a function never sees them (as in OpenFaaS, the caller's own
    `Authorization` is what reaches a function).
    """

    def __init__(self, settings: GatewaySettings, *, max_inflight: int) -> None:
        self.settings = settings
        self.base_url = settings.gateway_url.rstrip("/")
        self._system_authorization = (
            read_basic_auth(settings.secret_mount_path) if settings.basic_auth else None
        )
        self._limit = max(max_inflight, 1) + 8
        self._session: aiohttp.ClientSession | None = None
        self._http: Http1Client | None = None

    @property
    def http(self) -> Http1Client:
        if self._http is None:
            self._http = Http1Client(
                limit=self._limit, max_response_bytes=self.settings.max_response_bytes
            )
        return self._http

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.upstream_timeout),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type"),
            )
        return self._session

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def system_get(self, path: str) -> aiohttp.client._RequestContextManager:
        """GET a `/system/...` path of the gateway's management API, with its credentials."""
        if not path.startswith("/system/"):
            raise ValueError(f"{path} is not part of the gateway's management API")
        auth = self._system_authorization
        headers = {"Authorization": auth} if auth is not None else None
        return self.session.get(self.url(path), headers=headers)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._session is not None:
            await self._session.close()
            self._session = None
