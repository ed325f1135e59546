"""What a hook process reads before anything else: its settings.

``<data dir>/settings.json`` (flat JSON; a legacy nested ``{"env": {…}}`` is read too),
overridden by the environment, gives one :class:`HookConfig`: where events go (a server's
URL, key and project, or the embedded memory of the data directory), the hook's time
budget, how much context SessionStart injects, and which projects are left out. A setting
that is missing or malformed falls back to its default: the hooks must keep working.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from attrs import frozen

from claude_mem_http.client import hook_mapping

DEFAULT_TIMEOUT_MS = 2000
DEFAULT_CONTEXT_TOKENS = 1500
DEFAULT_CONTEXT_OBSERVATIONS = 20
TRUE = {"1", "true", "yes", "on"}


def data_dir_from(env: Mapping[str, str]) -> Path:
    raw = env.get("CLAUDE_MEM_DATA_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".claude-mem"


def read_settings_file(path: Path) -> dict[str, str]:
    """Flat string settings; a legacy nested ``{"env": {…}}`` is flattened. Unreadable or
    malformed files read as empty (the hooks must keep working)."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    nested = loaded.get("env")
    merged = {**(nested if isinstance(nested, dict) else {}), **loaded}
    return {
        str(k): str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in merged.items()
        if isinstance(v, str | int | float | bool)
    }


def _number(raw: str | None, default: float, *, minimum: float) -> float:
    try:
        value = float(raw) if raw is not None and raw.strip() else default
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= minimum else default


@frozen(kw_only=True)
class HookConfig:
    data_dir: Path
    server_url: str | None
    api_key: str | None
    project_id: str | None
    project_override: str | None
    timeout_s: float
    context_tokens: int
    context_observations: int
    excluded_projects: tuple[str, ...]
    internal: bool
    background_drain: bool
    env: dict[str, str]

    @property
    def mode(self) -> str:
        return "remote" if self.server_url else "embedded"

    @property
    def spool_path(self) -> Path:
        return self.data_dir / "spool.jsonl"

    def mapping_options(self) -> hook_mapping.MappingOptions:
        return hook_mapping.MappingOptions(
            project_id=self.project_id,
            project_override=self.project_override,
            excluded_projects=self.excluded_projects,
            internal=self.internal,
        )

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> HookConfig:
        base = dict(os.environ if env is None else env)
        data_dir = data_dir_from(base)
        merged = {**read_settings_file(data_dir / "settings.json"), **base}

        def get(name: str) -> str | None:
            value = (merged.get(name) or "").strip()
            return value or None

        runtime = (get("CLAUDE_MEM_RUNTIME") or "").lower()
        url = get("CLAUDE_MEM_SERVER_BETA_URL")
        if runtime in ("embedded", "local", "sqlite"):
            url = None
        return cls(
            data_dir=data_dir,
            server_url=url.rstrip("/") if url else None,
            api_key=get("CLAUDE_MEM_SERVER_BETA_API_KEY"),
            project_id=get("CLAUDE_MEM_SERVER_BETA_PROJECT_ID"),
            project_override=get("CLAUDE_MEM_PROJECT"),
            timeout_s=_number(get("CLAUDE_MEM_HOOK_TIMEOUT_MS"), DEFAULT_TIMEOUT_MS, minimum=50)
            / 1000,
            context_tokens=int(
                _number(get("CLAUDE_MEM_CONTEXT_TOKENS"), DEFAULT_CONTEXT_TOKENS, minimum=0)
            ),
            context_observations=int(
                _number(
                    get("CLAUDE_MEM_CONTEXT_OBSERVATIONS"), DEFAULT_CONTEXT_OBSERVATIONS, minimum=1
                )
            ),
            excluded_projects=tuple(
                p.strip() for p in (get("CLAUDE_MEM_EXCLUDED_PROJECTS") or "").split(",") if p
            ),
            internal=(get("CLAUDE_MEM_INTERNAL") or "").lower() in TRUE,
            background_drain=(get("CLAUDE_MEM_HOOK_BACKGROUND_DRAIN") or "1").lower() in TRUE,
            env=merged,
        )
