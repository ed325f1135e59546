"""Settings: one frozen object built from the environment and an optional settings file.

Variable names follow the reference server (``CLAUDE_MEM_SERVER_DATABASE_URL``,
``CLAUDE_MEM_REDIS_URL``...). Environment variables override ``<data dir>/settings.json``,
which overrides the defaults. With nothing configured the result is the embedded default:
a SQLite file in the data directory, the in-process queue and a provider chosen from the
API keys present (offline when there are none).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from claude_mem_core.domain.prices import PRICES, parse_price_table
from claude_mem_core.domain.rate_limits import NO_LIMITS, RateLimits, parse_rpm
from claude_mem_core.domain.redaction import DEFAULT_REDACTOR, Redactor, parse_extra_patterns
from claude_mem_core.errors import ConfigurationError
from claude_mem_core.services.context import SESSION_POLICIES, PipelineOptions

DEFAULT_PORT = 37877
TRUE = {"1", "true", "yes", "on"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DOCKERENV = Path("/.dockerenv")
# The reference's wording; a container is detected by CLAUDE_MEM_DOCKER or /.dockerenv.
LOCAL_DEV_IN_DOCKER = (
    "CLAUDE_MEM_AUTH_MODE=local-dev: local-dev is not allowed in Docker "
    "(CLAUDE_MEM_DOCKER or /.dockerenv); use api-key"
)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE


def _int(value: str | None, default: int, *, name: str, minimum: int = 1) -> int:
    if value is None or not value.strip():
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer (got {value!r})") from None
    if parsed < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum} (got {parsed})")
    return parsed


SEARCH_SNAPSHOT_POSTINGS_ENV = "CLAUDE_MEM_SEARCH_SNAPSHOT_POSTINGS"


def search_snapshot_postings(env: Mapping[str, str]) -> int | None:
    """How many postings PostgreSQL's search snapshots may hold in memory (None: the
    adapter's default; 0: search in SQL only)."""
    value = env.get(SEARCH_SNAPSHOT_POSTINGS_ENV)
    if value is None or not value.strip():
        return None
    return _int(value, 0, name=SEARCH_SNAPSHOT_POSTINGS_ENV, minimum=0)


def _float(value: str | None, default: float, *, name: str) -> float:
    if value is None or not value.strip():
        return default
    try:
        parsed = float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number (got {value!r})") from None
    if not parsed > 0:
        raise ConfigurationError(f"{name} must be positive (got {value})")
    return parsed


@frozen(kw_only=True)
class Settings:
    data_dir: Path
    database_url: str
    queue_engine: str  # "memory" (in-process) or "redis" (taskiq on Redis streams)
    redis_url: str | None = attrs.field(default=None, repr=False)
    redis_prefix: str = "claude_mem"
    provider: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # HTTP server processes sharing the port (``serve --workers``; PostgreSQL and Redis).
    server_workers: int = 1
    auth_mode: str = "api-key"
    allow_local_dev_bypass: bool = False
    generation_disabled: bool = False
    session_policy: str = "per-event"
    debounce_ms: int = 5000
    max_attempts: int = 3
    lease_seconds: float = 30.0
    heartbeat_seconds: float | None = None  # None: a third of the lease
    worker_concurrency: int = 8
    reconcile_interval_seconds: float = 5.0
    reconcile_batch_size: int = 100
    in_container: bool = False
    database_configured: bool = False
    # Optional semantic recall: off unless CLAUDE_MEM_EMBEDDINGS_URL is set.
    embeddings_url: str | None = None
    embeddings_model: str | None = None
    embeddings_api_key: str | None = attrs.field(default=None, repr=False)
    # Credentials are redacted from event payloads at ingest (a project's metadata may
    # say otherwise); extra typed detectors: type name -> regular expression.
    redaction_enabled: bool = True
    redaction_patterns: dict[str, str] = attrs.field(factory=dict)
    # Hours the change feed behind the live stream keeps its entries.
    stream_retain_hours: float = 168.0
    # Provider prices (USD per million tokens) over the built-in table: CLAUDE_MEM_PRICES.
    prices: dict[tuple[str, str], tuple[float, float]] = attrs.field(factory=lambda: dict(PRICES))
    # Calls per minute per paid provider, shared by every worker: CLAUDE_MEM_PROVIDER_RPM.
    provider_rpm: RateLimits = NO_LIMITS

    @property
    def embedded(self) -> bool:
        return not self.database_configured and self.queue_engine == "memory"

    @property
    def embeddings_enabled(self) -> bool:
        return self.embeddings_url is not None

    @property
    def queue_url(self) -> str:
        if self.queue_engine == "redis":
            return self.redis_url or ""
        return "memory://"

    def pipeline_options(self) -> PipelineOptions:
        return PipelineOptions(
            max_attempts=self.max_attempts,
            session_policy=self.session_policy,
            debounce_seconds=self.debounce_ms / 1000,
            lease_seconds=self.lease_seconds,
            redact_secrets=self.redaction_enabled,
            redactor=(
                Redactor(self.redaction_patterns) if self.redaction_patterns else DEFAULT_REDACTOR
            ),
            heartbeat_seconds=self.heartbeat_seconds,
            reconcile_batch=self.reconcile_batch_size,
            prices=self.prices,
            stream_retain_seconds=self.stream_retain_hours * 3600,
            provider_rpm=self.provider_rpm,
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, dockerenv: Path = DOCKERENV
    ) -> Settings:
        """``dockerenv``: the file whose presence marks a container (tests point it
        elsewhere)."""
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("CLAUDE_MEM_DATA_DIR") or Path.home() / ".claude-mem").expanduser()
        merged = {**_settings_file(data_dir), **env}

        def get(name: str) -> str | None:
            value = merged.get(name)
            return None if value is None else str(value)

        database_url = get("CLAUDE_MEM_SERVER_DATABASE_URL") or get("CLAUDE_MEM_DATABASE_URL")
        engine_raw = (get("CLAUDE_MEM_QUEUE_ENGINE") or "").strip().lower()
        redis_url = get("CLAUDE_MEM_REDIS_URL") or None
        if engine_raw in ("", "memory", "sqlite", "inprocess", "in-process"):
            engine = "redis" if engine_raw == "" and redis_url else "memory"
        elif engine_raw in ("redis", "taskiq", "bullmq"):
            engine = "redis"
        else:
            raise ConfigurationError(
                f"CLAUDE_MEM_QUEUE_ENGINE={engine_raw!r} is not supported; use 'memory' "
                "(in-process) or 'redis' (taskiq on Redis; 'bullmq' is accepted as an alias)"
            )
        policy = (get("CLAUDE_MEM_SERVER_SESSION_POLICY") or "per-event").strip().lower()
        if policy not in SESSION_POLICIES:
            raise ConfigurationError(
                f"CLAUDE_MEM_SERVER_SESSION_POLICY={policy!r} is not one of "
                + ", ".join(SESSION_POLICIES)
            )
        auth = (get("CLAUDE_MEM_AUTH_MODE") or "api-key").strip().lower()
        if auth not in ("api-key", "local-dev"):
            raise ConfigurationError(
                f"CLAUDE_MEM_AUTH_MODE={auth!r} is not supported; use 'api-key' or 'local-dev'"
            )
        prefix = (
            "".join(
                c if c.isalnum() or c in "_-" else "_"
                for c in (get("CLAUDE_MEM_QUEUE_REDIS_PREFIX") or "claude_mem")
            )
            or "claude_mem"
        )
        return cls(
            data_dir=data_dir,
            database_url=database_url or f"sqlite+aiosqlite:///{data_dir / 'claude-mem.db'}",
            database_configured=bool(database_url),
            queue_engine=engine,
            redis_url=redis_url,
            redis_prefix=prefix,
            provider=get("CLAUDE_MEM_SERVER_PROVIDER") or None,
            host=get("CLAUDE_MEM_SERVER_HOST") or "127.0.0.1",
            port=_int(get("CLAUDE_MEM_SERVER_PORT"), DEFAULT_PORT, name="CLAUDE_MEM_SERVER_PORT"),
            server_workers=_int(
                get("CLAUDE_MEM_SERVER_WORKERS"), 1, name="CLAUDE_MEM_SERVER_WORKERS"
            ),
            auth_mode=auth,
            allow_local_dev_bypass=_flag(get("CLAUDE_MEM_ALLOW_LOCAL_DEV_BYPASS")),
            generation_disabled=_flag(get("CLAUDE_MEM_GENERATION_DISABLED")),
            session_policy=policy,
            debounce_ms=_int(
                get("CLAUDE_MEM_SERVER_SESSION_DEBOUNCE_MS"),
                5000,
                name="CLAUDE_MEM_SERVER_SESSION_DEBOUNCE_MS",
            ),
            max_attempts=_int(get("CLAUDE_MEM_MAX_ATTEMPTS"), 3, name="CLAUDE_MEM_MAX_ATTEMPTS"),
            lease_seconds=_float(
                get("CLAUDE_MEM_JOB_LEASE_SECONDS"), 30.0, name="CLAUDE_MEM_JOB_LEASE_SECONDS"
            ),
            heartbeat_seconds=_float_or_none(
                get("CLAUDE_MEM_JOB_HEARTBEAT_SECONDS"), name="CLAUDE_MEM_JOB_HEARTBEAT_SECONDS"
            ),
            worker_concurrency=_int(
                get("CLAUDE_MEM_WORKER_CONCURRENCY"), 8, name="CLAUDE_MEM_WORKER_CONCURRENCY"
            ),
            reconcile_interval_seconds=_float(
                get("CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS"),
                5.0,
                name="CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS",
            ),
            reconcile_batch_size=_int(
                get("CLAUDE_MEM_RECONCILE_BATCH_SIZE"), 100, name="CLAUDE_MEM_RECONCILE_BATCH_SIZE"
            ),
            in_container=_in_container(get("CLAUDE_MEM_DOCKER"), dockerenv),
            embeddings_url=_text(get("CLAUDE_MEM_EMBEDDINGS_URL")),
            embeddings_model=_text(get("CLAUDE_MEM_EMBEDDINGS_MODEL")),
            embeddings_api_key=_text(get("CLAUDE_MEM_EMBEDDINGS_API_KEY")),
            redaction_enabled=_on_unless_off(get("CLAUDE_MEM_REDACTION"), "CLAUDE_MEM_REDACTION"),
            redaction_patterns=_patterns(get("CLAUDE_MEM_REDACTION_PATTERNS")),
            prices=_prices(get("CLAUDE_MEM_PRICES")),
            provider_rpm=_rpm(get("CLAUDE_MEM_PROVIDER_RPM")),
            stream_retain_hours=_float(
                get("CLAUDE_MEM_STREAM_RETAIN_HOURS"), 168.0, name="CLAUDE_MEM_STREAM_RETAIN_HOURS"
            ),
        )

    def problems(self) -> list[str]:
        """Unsafe or contradictory combinations, each saying what to set."""
        found: list[str] = []
        if self.queue_engine == "redis" and not self.redis_url:
            found.append(
                "the Redis queue engine needs CLAUDE_MEM_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        if self.auth_mode == "local-dev":
            if self.in_container:
                found.append(LOCAL_DEV_IN_DOCKER)
            if self.host not in LOOPBACK_HOSTS:
                found.append(
                    f"CLAUDE_MEM_AUTH_MODE=local-dev is refused when binding {self.host}; bind "
                    "127.0.0.1 (CLAUDE_MEM_SERVER_HOST) or use api-key"
                )
        lease = self.lease_problem()
        if lease is not None:
            found.append(lease)
        if self.embeddings_enabled and not self.embeddings_model:
            found.append(
                "CLAUDE_MEM_EMBEDDINGS_URL needs CLAUDE_MEM_EMBEDDINGS_MODEL "
                "(e.g. text-embedding-3-small, or nomic-embed-text on Ollama)"
            )
        return found

    def lease_problem(self) -> str | None:
        """A heartbeat too slow for the lease (a live worker's job could be taken over)."""
        beat = self.heartbeat_seconds
        if beat is not None and beat * 2 > self.lease_seconds:
            return (
                f"CLAUDE_MEM_JOB_HEARTBEAT_SECONDS={beat:g} must be at most half of "
                f"CLAUDE_MEM_JOB_LEASE_SECONDS={self.lease_seconds:g} (a third is the default), "
                "or a slow provider call could be taken over from a live worker"
            )
        return None

    def validate(self) -> Settings:
        found = self.problems()
        if found:
            raise ConfigurationError(
                "claude-mem configuration is invalid:\n" + "\n".join(f"  - {p}" for p in found)
            )
        return self


def _float_or_none(value: str | None, *, name: str) -> float | None:
    if value is None or not value.strip():
        return None
    return _float(value, 0.0, name=name)


def _on_unless_off(value: str | None, name: str) -> bool:
    raw = (value or "").strip().lower()
    if raw in ("", *TRUE):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be on or off (got {value!r})")


def _patterns(value: str | None) -> dict[str, str]:
    try:
        return parse_extra_patterns(value)
    except ValueError as e:
        raise ConfigurationError(f"CLAUDE_MEM_REDACTION_PATTERNS {e}") from None


def _prices(value: str | None) -> dict[tuple[str, str], tuple[float, float]]:
    """The built-in price table with CLAUDE_MEM_PRICES (a JSON object) read over it."""
    table = dict(PRICES)
    if not (value or "").strip():
        return table
    try:
        raw = json.loads(value or "")
        if not isinstance(raw, dict):
            raise ValueError('give a JSON object like {"openai/gpt-4o": [2.5, 10]}')
        table.update(parse_price_table(raw))
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ConfigurationError(f"CLAUDE_MEM_PRICES: {e}") from None
    return table


def _rpm(value: str | None) -> RateLimits:
    try:
        return parse_rpm(value)
    except ValueError as e:
        raise ConfigurationError(
            f"CLAUDE_MEM_PROVIDER_RPM: {e} (write e.g. 120, or anthropic=50,openai=500)"
        ) from None


def _text(value: str | None) -> str | None:
    """``value`` stripped, or None when unset or blank."""
    return (value or "").strip() or None


def _in_container(flag: str | None, dockerenv: Path) -> bool:
    """A container is a container: CLAUDE_MEM_DOCKER=1/true says so, and so does the
    ``dockerenv`` file; CLAUDE_MEM_DOCKER=0 cannot make a container's rules go away."""
    return _flag(flag) or dockerenv.exists()


def _settings_file(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "settings.json"
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"{path} must hold a JSON object")
    return {str(k): str(v) for k, v in loaded.items() if isinstance(v, str | int | float | bool)}
