"""Teams, projects and API keys of the in-memory storage: who owns what, and who may act."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from claude_mem_core.adapters.memory_state import Repo, in_scope, is_deleted, paged, require_project
from claude_mem_core.domain.models import ApiKey, Project, Team
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import Page


class MemoryTeams(Repo):
    async def add(self, team: Team) -> None:
        self._tx.write("teams")[team.id] = team

    async def get(self, team_id: str) -> Team | None:
        team: Team | None = self._tx.read("teams").get(team_id)
        return team

    async def find_by_name(self, name: str) -> Team | None:
        matches = [t for t in self._tx.read("teams").values() if t.name == name]
        return min(matches, key=lambda t: (t.created_at, t.id)) if matches else None

    async def list(self, page: Page) -> tuple[Sequence[Team], int]:
        rows = sorted(self._tx.read("teams").values(), key=lambda t: (t.created_at, t.id))
        return paged(rows, page)


class MemoryProjects(Repo):
    async def add(self, project: Project) -> None:
        if project.team_id not in self._tx.read("teams"):
            raise NotFound("Team not found")
        self._tx.write("projects")[project.id] = project

    async def get(self, team_id: str, project_id: str) -> Project | None:
        project: Project | None = self._tx.read("projects").get(project_id)
        if project is None or project.team_id != team_id or is_deleted(self._tx, project_id):
            return None
        return project

    async def find_by_name(self, team_id: str, name: str) -> Project | None:
        matches = [
            p
            for p in self._tx.read("projects").values()
            if p.team_id == team_id and p.name == name and not is_deleted(self._tx, p.id)
        ]
        return min(matches, key=lambda p: (p.created_at, p.id)) if matches else None

    async def list(self, team_id: str, page: Page) -> tuple[Sequence[Project], int]:
        rows = sorted(
            (
                p
                for p in self._tx.read("projects").values()
                if p.team_id == team_id and not is_deleted(self._tx, p.id)
            ),
            key=lambda p: (p.created_at, p.id),
        )
        return paged(rows, page)

    async def set_retention(
        self, team_id: str, project_id: str, days: int | None, *, at: datetime
    ) -> Project | None:
        project = await self.get(team_id, project_id)
        if project is None:
            return None
        changed = attrs.evolve(project, retain_days=days, updated_at=at)
        self._tx.write("projects")[project_id] = changed
        return changed


class MemoryApiKeys(Repo):
    async def add(self, key: ApiKey) -> None:
        if key.team_id is not None and key.team_id not in self._tx.read("teams"):
            raise NotFound("Team not found")
        if key.project_id is not None:
            require_project(self._tx, key.team_id or "", key.project_id)
        self._tx.write("api_keys")[key.id] = key

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        for key in self._tx.read("api_keys").values():
            if key.key_hash == key_hash:
                found: ApiKey = key
                return found
        return None

    async def get_unscoped(self, key_id: str) -> ApiKey | None:
        key: ApiKey | None = self._tx.read("api_keys").get(key_id)
        return key

    async def list(
        self, team_id: str | None, project_id: str | None, page: Page
    ) -> tuple[Sequence[ApiKey], int]:
        rows = [k for k in self._tx.read("api_keys").values() if in_scope(k, team_id, project_id)]
        rows.sort(key=lambda k: (k.created_at, k.id), reverse=True)
        return paged(rows, page)

    async def save(self, key: ApiKey) -> None:
        if key.id in self._tx.read("api_keys"):
            self._tx.write("api_keys")[key.id] = key

    async def record_use(self, used_at: Mapping[str, datetime]) -> None:
        for key_id, at in used_at.items():
            key = self._tx.read("api_keys").get(key_id)
            if key is not None and (key.last_used_at is None or key.last_used_at < at):
                self._tx.write("api_keys")[key_id] = attrs.evolve(key, last_used_at=at)
