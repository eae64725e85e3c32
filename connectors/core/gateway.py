"""The one pooled HTTP client a process uses to reach its gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp

from connectors.core.config import GatewaySettings
from connectors.core.errors import ConfigError

log = logging.getLogger(__name__)


def read_basic_auth(secret_mount_path: str) -> aiohttp.BasicAuth:
    """Gateway credentials from `basic-auth-user` and `basic-auth-password` files."""
    folder = Path(secret_mount_path)
    try:
        user = (folder / "basic-auth-user").read_text().strip()
        password = (folder / "basic-auth-password").read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"basic_auth=true but the credentials could not be read from {folder}: "
            f"{exc.strerror or exc}"
        ) from None
    return aiohttp.BasicAuth(user, password)


class GatewayClient:
    """A keep-alive `aiohttp.ClientSession` sized for `max_inflight` calls to the gateway."""

    def __init__(self, settings: GatewaySettings, *, max_inflight: int) -> None:
        self.settings = settings
        self.base_url = settings.gateway_url.rstrip("/")
        self.auth = read_basic_auth(settings.secret_mount_path) if settings.basic_auth else None
        self._limit = max(max_inflight, 1) + 8
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auth=self.auth,
                timeout=aiohttp.ClientTimeout(total=self.settings.upstream_timeout),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type"),
            )
        return self._session

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
