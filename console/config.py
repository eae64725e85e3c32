"""Everything `ferry console` reads from its environment, in one typed object, and the one
rule (shared with `ferry gateway`) for when the console may be served."""

from __future__ import annotations

from dataclasses import dataclass

from asyncq.settings import QueueNatsSettings
from connectors.core.config import GatewaySettings, RuntimeSettings
from connectors.core.hosts import listen_address
from connectors.core.settings import choice, group, port, setting
from ledger.settings import CallLedgerSettings

ENABLED_CHOICES = ("auto", "true", "false")
ENABLED_HELP = (
    "serve the web console at /system/console/: auto (only when basic_auth=true), true (also "
    "without credentials: anyone who reaches the port may cancel, replay and purge), false"
)


def console_allowed(enabled: str, basic_auth: bool) -> bool:
    """Credentials protect the console; without them it is served only when asked for."""
    return enabled == "true" or (enabled == "auto" and basic_auth)


@dataclass(frozen=True)
class ConsoleConfig:
    nats: QueueNatsSettings = group(QueueNatsSettings)
    ledger: CallLedgerSettings = group(CallLedgerSettings)
    gateway: GatewaySettings = group(GatewaySettings)
    port: int = setting("port", 8090, "port of the console (0: any free)", port)
    listen_host: str = setting(
        "listen_host", "0.0.0.0", "address the console binds", listen_address
    )
    console_enabled: str = setting(
        "console_enabled", "auto", ENABLED_HELP, choice(*ENABLED_CHOICES)
    )
    cron_kv_bucket: str = setting(
        "cron_kv_bucket", "ferry-cron", "the cron connector's claims bucket (schedules page)"
    )
    runtime: RuntimeSettings = group(RuntimeSettings)

    def __post_init__(self) -> None:
        if not console_allowed(self.console_enabled, self.gateway.basic_auth):
            raise ValueError(
                "the console needs basic_auth=true (its credentials protect it), or "
                "console_enabled=true to serve it without credentials"
            )
