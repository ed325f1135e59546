"""The tenancy repositories: teams, projects and API keys. Keys are read by hash or id without
a scope, since a key is what establishes one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db, _page
from claude_mem_core.adapters.sqlalchemy.rows import _api_key, _project, _team
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted
from claude_mem_core.domain.models import ApiKey, Project, Team
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.storage import Page


class TeamRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, team: Team) -> None:
        await self._db.write(
            sa.insert(t.teams).values(
                id=team.id,
                name=team.name,
                metadata=team.metadata,
                created_at=team.created_at,
                updated_at=team.updated_at,
            )
        )

    async def get(self, team_id: str) -> Team | None:
        row = await self._db.one_or_none(self._db.select(t.teams).where(t.teams.c.id == team_id))
        return _team(row) if row else None

    async def find_by_name(self, name: str) -> Team | None:
        c = t.teams.c
        stmt = self._db.select(t.teams).where(c.name == name).order_by(c.created_at, c.id).limit(1)
        row = await self._db.one_or_none(stmt)
        return _team(row) if row else None

    async def list(self, page: Page) -> tuple[Sequence[Team], int]:
        c = t.teams.c
        rows = await self._db.all(
            _page(self._db.select(t.teams).order_by(c.created_at, c.id), page)
        )
        return [_team(r) for r in rows], await self._db.count(t.teams)


class ProjectRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, project: Project) -> None:
        await self._db.write(
            sa.insert(t.projects).values(
                id=project.id,
                team_id=project.team_id,
                name=project.name,
                metadata=project.metadata,
                created_at=project.created_at,
                updated_at=project.updated_at,
            ),
            not_found=f"team {project.team_id} not found",
        )

    async def get(self, team_id: str, project_id: str) -> Project | None:
        row = await self._db.row(self._db.sql.project_get, {"id": project_id, "team_id": team_id})
        return _project(row) if row else None

    async def find_by_name(self, team_id: str, name: str) -> Project | None:
        c = t.projects.c
        stmt = (
            self._db.select(t.projects)
            .where(c.team_id == team_id, c.name == name, c.deleted_at.is_(None))
            .order_by(c.created_at, c.id)
            .limit(1)
        )
        row = await self._db.one_or_none(stmt)
        return _project(row) if row else None

    async def list(self, team_id: str, page: Page) -> tuple[Sequence[Project], int]:
        c = t.projects.c
        live = (c.team_id == team_id, c.deleted_at.is_(None))
        stmt = self._db.select(t.projects).where(*live).order_by(c.created_at, c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_project(r) for r in rows], await self._db.count(t.projects, *live)

    async def set_retention(
        self, team_id: str, project_id: str, days: int | None, *, at: datetime
    ) -> Project | None:
        c = t.projects.c
        result = await self._db.write(
            sa.update(t.projects)
            .where(c.id == project_id, c.team_id == team_id, c.deleted_at.is_(None))
            .values(retain_days=days, updated_at=at)
        )
        if not result.rowcount:
            return None
        return await self.get(team_id, project_id)


class ApiKeyRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, key: ApiKey) -> None:
        await self._db.write(
            sa.insert(t.api_keys).values(
                id=key.id,
                key_hash=key.key_hash,
                team_id=key.team_id,
                project_id=key.project_id,
                actor_id=key.actor_id,
                name=key.name,
                scopes=sorted(key.scopes),
                revoked_at=key.revoked_at,
                expires_at=key.expires_at,
                last_used_at=key.last_used_at,
                created_at=key.created_at,
                updated_at=key.updated_at,
            ),
            not_found="project_id must belong to team_id",
        )

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._db.row(self._db.sql.api_key_by_hash, {"key_hash": key_hash})
        return _api_key(row) if row else None

    async def get_unscoped(self, key_id: str) -> ApiKey | None:
        row = await self._db.row(self._db.sql.api_key_by_id, {"id": key_id})
        return _api_key(row) if row else None

    async def list(
        self, team_id: str | None, project_id: str | None, page: Page
    ) -> tuple[Sequence[ApiKey], int]:
        c = t.api_keys.c
        where = admitted(TenantScope(team_id, project_id), c)
        stmt = self._db.select(t.api_keys).where(where).order_by(c.created_at.desc(), c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_api_key(r) for r in rows], await self._db.count(t.api_keys, where)

    async def save(self, key: ApiKey) -> None:
        await self._db.execute(
            sa.update(t.api_keys)
            .where(t.api_keys.c.id == key.id)
            .values(
                revoked_at=key.revoked_at,
                expires_at=key.expires_at,
                last_used_at=key.last_used_at,
                updated_at=key.updated_at,
            )
        )

    async def record_use(self, used_at: Mapping[str, datetime]) -> None:
        if not used_at:
            return
        c = t.api_keys.c
        at = sa.bindparam("at", type_=c.last_used_at.type)
        stmt = (
            sa.update(t.api_keys)
            .where(c.id == sa.bindparam("key_id"))
            .where(sa.or_(c.last_used_at.is_(None), c.last_used_at < at))
            .values(last_used_at=at)
        )
        await self._db.run_many(stmt, [{"key_id": k, "at": v} for k, v in sorted(used_at.items())])
