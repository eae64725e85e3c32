"""Typed configuration from environment variables.

Each process declares one frozen dataclass; every field names its environment variable, its
default and a one-line help text through `setting(...)`. `load_settings` reads the environment
into that dataclass (recursing into nested setting groups) and raises `ConfigError` naming the
variable on the first bad value, so a process can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from connectors.core.durations import format_duration, parse_duration
from connectors.core.errors import ConfigError
from connectors.core.targets import shorten

T = TypeVar("T")
Parser = Callable[[str], Any]
Fallback = Callable[[Mapping[str, str]], str | None]


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one field is read from the environment."""

    env: str
    help: str
    parse: Parser
    shown_default: str
    aliases: tuple[str, ...] = ()
    fallback: Fallback | None = None
    fallback_help: str = ""
    fallback_reads: tuple[str, ...] = ()
    secret: bool = False


def setting(
    env: str,
    default: Any,
    help: str,
    parse: Parser = str,
    *,
    aliases: tuple[str, ...] = (),
    fallback: Fallback | None = None,
    fallback_help: str = "",
    fallback_reads: tuple[str, ...] = (),
    shown: str | None = None,
    secret: bool = False,
) -> Any:
    """Declare a dataclass field read from environment variable `env`."""
    spec = Spec(
        env=env,
        help=help,
        parse=parse,
        shown_default=shown if shown is not None else _show(default),
        aliases=aliases,
        fallback=fallback,
        fallback_help=fallback_help,
        fallback_reads=fallback_reads,
        secret=secret,
    )
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples or frozensets for setting defaults")
    return dataclasses.field(default=default, metadata={"spec": spec})


def group(cls: type[T]) -> Any:
    """Declare a nested group of settings (e.g. the shared retry settings)."""
    return dataclasses.field(default_factory=cls, metadata={"group": cls})


def _show(default: Any) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple | frozenset):
        return ",".join(str(v) for v in default)
    if default is None:
        return ""
    return str(default)


def load_settings(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build `cls` from `environ`; raise ConfigError naming the first bad variable."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "group" in field.metadata:
            values[field.name] = load_settings(field.metadata["group"], environ)
            continue
        spec: Spec | None = field.metadata.get("spec")
        if spec is None:
            continue
        raw, name = _lookup(spec, environ)
        if raw is None:
            continue
        try:
            values[field.name] = spec.parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "<hidden>" if spec.secret else shorten(raw)
            raise ConfigError(f"{name}={shown}: {exc}") from None
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _lookup(spec: Spec, environ: Mapping[str, str]) -> tuple[str | None, str]:
    for name in (spec.env, *spec.aliases):
        raw = environ.get(name)
        if raw is not None and raw.strip() != "":
            return raw.strip(), name
    if spec.fallback is not None:
        return spec.fallback(environ), spec.fallback_help or spec.env
    return None, spec.env


def iter_specs(cls: type[Any]) -> Iterator[Spec]:
    """Every setting of `cls`, nested groups flattened, in declaration order."""
    for field in dataclasses.fields(cls):
        if "group" in field.metadata:
            yield from iter_specs(field.metadata["group"])
        elif "spec" in field.metadata:
            yield field.metadata["spec"]


def env_names(cls: type[Any]) -> set[str]:
    """All environment variable names a settings class reads (aliases included)."""
    names: set[str] = set()
    for spec in iter_specs(cls):
        names.add(spec.env)
        names.update(spec.aliases)
    return names


def read_names(cls: type[Any]) -> set[str]:
    """Every environment variable a process configured by `cls` may read.

    `env_names` plus the variables fallbacks build a value from (`Spec.fallback_reads`) and
    those a library reads for a settings group (its `library_env` class attribute, e.g. the
    standard AWS variables botocore reads). Deployment files are checked against this set.
    """
    names = env_names(cls)
    for spec in iter_specs(cls):
        names.update(spec.fallback_reads)
    for group_cls in _groups(cls):
        names.update(getattr(group_cls, "library_env", ()))
    return names


def _groups(cls: type[Any]) -> Iterator[type[Any]]:
    yield cls
    for field in dataclasses.fields(cls):
        if "group" in field.metadata:
            yield from _groups(field.metadata["group"])


def describe_settings(cls: type[Any]) -> str:
    """The environment section of a process's `--help`."""
    specs = list(iter_specs(cls))
    names = [s.env + (f" ({'/'.join(s.aliases)})" if s.aliases else "") for s in specs]
    width = max(len(n) for n in names) + 2
    lines = ["environment variables (default in brackets):"]
    for spec, name in zip(specs, names, strict=True):
        default = f" [{spec.shown_default}]" if spec.shown_default != "" else ""
        floor = f" (at least {spec.parse.shown})" if isinstance(spec.parse, AtLeast) else ""
        lines.append(f"  {name.ljust(width)}{spec.help}{floor}{default}")
        if spec.fallback_help:
            lines.append(f"  {'':{width}}  unset: built from {spec.fallback_help}")
    return "\n".join(lines)


# Parsers shared by every process. Each raises ValueError with a short reason.


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def int_in(low: int, high: int | None = None) -> Parser:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if value < low or (high is not None and value > high):
            upper = f" and {high}" if high is not None else ""
            raise ValueError(
                f"must be at least {low}" if high is None else f"must be between {low}{upper}"
            )
        return value

    return parse


def duration(text: str) -> float:
    return parse_duration(text)


def positive_duration(text: str) -> float:
    """A duration that must be longer than zero (a zero timeout would make a process useless)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be more than 0s")
    return seconds


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """A parser with a floor: below it a value is accepted by the type but makes the process
    useless (`publish_timeout=1ns` fails every call, `refresh_interval=1ns` is a busy loop).
    `--help` and the error line show the floor as `shown`."""

    read: Parser
    floor: float
    shown: str

    def __call__(self, text: str) -> Any:
        value = self.read(text)
        if value < self.floor:
            raise ValueError(f"must be at least {self.shown}")
        return value


def duration_at_least(shown: str) -> AtLeast:
    return AtLeast(parse_duration, parse_duration(shown), shown)


def bytes_at_least(floor: int) -> AtLeast:
    return AtLeast(int_in(0), floor, str(floor))


# The floors, by what a setting is (docs/operating.md lists them):
# a bound on one exchange (a call, a callback, a publish, a request's arrival): under 10 ms
# it is shorter than a round trip plus a scheduler tick on a busy machine
exchange_timeout = duration_at_least("10ms")
# reaching a broker at start-up, and how often something is re-read, pinged or committed:
# more often than ten times a second is a busy loop
connect_or_interval = duration_at_least("100ms")
# how long a stored call's ledger entry or body is kept: under a minute it is gone before a
# queued call has run or anyone has read it
retention = duration_at_least("1m")
# a body or answer bound: under 1 KiB not even an error document fits
MIN_BODY_BYTES = 1024
body_bytes = bytes_at_least(MIN_BODY_BYTES)


def port(text: str) -> int:
    return int(int_in(0, 65535)(text))


def csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def status_codes(text: str) -> frozenset[int]:
    codes: set[int] = set()
    for part in csv(text):
        try:
            code = int(part)
        except ValueError:
            raise ValueError(f"{part!r} is not an HTTP status code") from None
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code")
        codes.add(code)
    return frozenset(codes)


def choice(*options: str) -> Parser:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def http_url(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return text.rstrip("/")


def http_url_or_empty(text: str) -> str:
    return http_url(text) if text.strip() else ""


def shown_duration(seconds: float) -> str:
    return format_duration(seconds)
