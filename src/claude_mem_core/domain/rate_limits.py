"""Provider rate limits as pure values: how many calls a provider may get per minute from
all workers together, and the minute windows they are counted in.

The setting (``CLAUDE_MEM_PROVIDER_RPM``) is a comma-separated list whose entries are
``<provider>=<calls per minute>`` or a bare number, the limit of every other paid
provider: ``120``, ``anthropic=50,openai=500``, ``anthropic=50,200``. Unset or blank: no
limit (the provider's own 429 answers still pause every worker). Only providers that send
a bill are limited; a free local model (``offline``, ``ollama``) is never held.

Windows are fixed UTC minutes: at most ``limit`` calls start within each one, so over
any sliding 60 seconds up to twice the limit may start (the end of one minute and the
start of the next); a provider that counts strictly per sliding minute may want a limit
set a little under half its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from attrs import field, frozen

from claude_mem_core.domain.prices import FREE_PROVIDERS

WINDOW = timedelta(minutes=1)
# The provider names a limit may name (those of ``adapters/providers.py`` that send a bill;
# ``claude`` is an alias of ``anthropic`` there and here).
PAID_PROVIDERS = ("anthropic", "openai", "openrouter", "gemini", "openai-compatible")
ALIASES = {"claude": "anthropic"}
# Beyond this, "no limit" is what is meant.
MAX_RPM = 1_000_000

_NUMBER = re.compile(r"^[0-9]+$")


def _frozen_map(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType({k.casefold(): v for k, v in value.items()})


@frozen(kw_only=True)
class RateLimits:
    """Calls per minute by provider name (``per_provider``), and ``default`` for a paid
    provider not named (None: unlimited)."""

    per_provider: Mapping[str, int] = field(factory=dict, converter=_frozen_map, hash=False)
    default: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.per_provider) or self.default is not None

    def limit_for(self, provider: str) -> int | None:
        """``provider``'s calls per minute, or None when it is not limited."""
        name = provider.casefold()
        if name in FREE_PROVIDERS:
            return None
        return self.per_provider.get(ALIASES.get(name, name), self.default)

    def describe(self) -> str:
        """The limits as the setting writes them (for logs and ``--help``)."""
        parts = [f"{name}={n}" for name, n in sorted(self.per_provider.items())]
        if self.default is not None:
            parts.append(str(self.default))
        return ",".join(parts)


NO_LIMITS = RateLimits()


def _count(text: str, what: str) -> int:
    if not _NUMBER.match(text):
        raise ValueError(f"{what} must be a whole number of calls per minute, not {text!r}")
    value = int(text)
    if not 1 <= value <= MAX_RPM:
        raise ValueError(f"{what} must be between 1 and {MAX_RPM}, not {value}")
    return value


def parse_rpm(value: str | None) -> RateLimits:
    """The limits a setting says (see the module's doc); ValueError saying what is wrong."""
    text = (value or "").strip()
    if not text:
        return NO_LIMITS
    per_provider: dict[str, int] = {}
    default: int | None = None
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"an entry of {text!r} is empty")
        name, sep, count = (s.strip() for s in entry.partition("="))
        if not sep:
            if default is not None:
                raise ValueError("more than one limit is given for every provider")
            default = _count(name, "a limit")
            continue
        key = ALIASES.get(name.casefold(), name.casefold())
        if key in FREE_PROVIDERS:
            raise ValueError(f"{name!r} is a free provider, never limited")
        if key not in PAID_PROVIDERS:
            raise ValueError(
                f"{name!r} is not a paid provider; name one of " + ", ".join(PAID_PROVIDERS)
            )
        if key in per_provider:
            raise ValueError(f"{key!r} is given more than one limit")
        per_provider[key] = _count(count, f"the limit of {key}")
    return RateLimits(per_provider=per_provider, default=default)


def window_start(now: datetime) -> datetime:
    """The start (UTC) of the minute window ``now`` falls in."""
    return now.astimezone(UTC).replace(second=0, microsecond=0)


def next_window(now: datetime) -> datetime:
    """The start (UTC) of the window after ``now``'s."""
    return window_start(now) + WINDOW


__all__ = [
    "ALIASES",
    "MAX_RPM",
    "NO_LIMITS",
    "PAID_PROVIDERS",
    "WINDOW",
    "RateLimits",
    "next_window",
    "parse_rpm",
    "window_start",
]
