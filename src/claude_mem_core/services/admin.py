"""Use cases for administrators: teams, projects and API keys.

API keys: only the SHA-256 of a key is stored; the raw key is returned once, at creation
or rotation. Revoked and expired keys are refused by :func:`verify_api_key`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs
from attrs import frozen

from claude_mem_core.domain.models import UNKNOWN_KEY, ApiKey, Project, Team
from claude_mem_core.domain.scopes import DEFAULT_SCOPES, Need, require, validate_scopes
from claude_mem_core.errors import Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.storage import Page, UnitOfWork
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit

KEY_PREFIX = "cmem_"
SYSTEM_ACTOR = "system:admin"


def hash_key(raw_key: str) -> str:
    # A header can carry bytes that are not UTF-8 (they arrive as lone surrogates): such a
    # key hashes like any other and, matching no stored hash, is refused as unknown.
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput.field(field, "must be a non-empty string")
    if len(value) > 200:
        raise InvalidInput.field(field, "must be at most 200 characters")
    return value.strip()


def _check_page(limit: int, offset: int) -> Page:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
        raise InvalidInput.field("limit", "must be an integer from 1 to 500")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput.field("offset", "must be a non-negative integer")
    return Page(limit=limit, offset=offset)


async def create_team(deps: Deps, name: str, *, actor_id: str = SYSTEM_ACTOR) -> Team:
    now = deps.clock.now()
    team = Team(id=deps.ids.new_id(), name=_name(name, "name"), created_at=now, updated_at=now)
    async with deps.storage.unit_of_work() as uow:
        await uow.teams.add(team)
        await audit(
            uow,
            deps,
            Caller(team_id=team.id, actor_id=actor_id),
            "team.create",
            resource_id=team.id,
            details={"name": team.name},
        )
    return team


async def list_teams(deps: Deps, *, limit: int = 50, offset: int = 0) -> tuple[Sequence[Team], int]:
    page = _check_page(limit, offset)
    async with deps.storage.unit_of_work() as uow:
        return await uow.teams.list(page)


async def create_project(
    deps: Deps, team_id: str, name: str, *, actor_id: str = SYSTEM_ACTOR
) -> Project:
    now = deps.clock.now()
    project = Project(
        id=deps.ids.new_id(),
        team_id=team_id,
        name=_name(name, "name"),
        created_at=now,
        updated_at=now,
    )
    async with deps.storage.unit_of_work() as uow:
        if await uow.teams.get(team_id) is None:
            raise NotFound("Team not found")
        await uow.projects.add(project)
        await audit(
            uow,
            deps,
            Caller(team_id=team_id, actor_id=actor_id),
            "project.create",
            project_id=project.id,
            resource_id=project.id,
            details={"name": project.name},
        )
    return project


async def list_projects(
    deps: Deps, team_id: str, *, limit: int = 50, offset: int = 0
) -> tuple[Sequence[Project], int]:
    page = _check_page(limit, offset)
    async with deps.storage.unit_of_work() as uow:
        if await uow.teams.get(team_id) is None:
            raise NotFound("Team not found")
        return await uow.projects.list(team_id, page)


async def ensure_team(deps: Deps, team_name: str) -> Team:
    """Find a team by name, or create it (the embedded default and local-dev mode)."""
    async with deps.storage.unit_of_work() as uow:
        team = await uow.teams.find_by_name(team_name)
    return team if team is not None else await create_team(deps, team_name)


async def ensure_project(deps: Deps, team_id: str, id_or_name: str) -> Project:
    """A project of the team by id, else by name, else a new project of that name."""
    async with deps.storage.unit_of_work() as uow:
        project = await uow.projects.get(team_id, id_or_name)
        if project is None:
            project = await uow.projects.find_by_name(team_id, id_or_name)
    return project if project is not None else await create_project(deps, team_id, id_or_name)


async def ensure_team_and_project(
    deps: Deps, team_name: str, project_name: str
) -> tuple[Team, Project]:
    """Find by name or create both."""
    team = await ensure_team(deps, team_name)
    return team, await ensure_project(deps, team.id, project_name)


@frozen(kw_only=True)
class IssuedKey:
    """A key as created: ``raw_key`` exists only here and is never stored."""

    key: ApiKey
    raw_key: str = attrs.field(repr=False)


def _new_key(
    deps: Deps,
    *,
    team_id: str,
    project_id: str | None,
    scopes: Iterable[str],
    name: str | None,
    expires_at: datetime | None,
    actor_id: str,
) -> IssuedKey:
    held = validate_scopes(scopes)
    now = deps.clock.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput.field("expires_at", "must be in the future")
    raw = new_raw_key()
    key = ApiKey(
        id=deps.ids.new_id(),
        key_hash=hash_key(raw),
        team_id=team_id,
        project_id=project_id,
        actor_id=actor_id,
        name=name.strip() if name else None,
        scopes=held,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )
    return IssuedKey(key=key, raw_key=raw)


async def _store_key(uow: UnitOfWork, deps: Deps, issued: IssuedKey, actor_id: str) -> None:
    key = issued.key
    team_id = key.team_id or ""
    if await uow.teams.get(team_id) is None:
        raise NotFound("Team not found")
    if key.project_id is not None and await uow.projects.get(team_id, key.project_id) is None:
        raise NotFound("Project not found")
    await uow.api_keys.add(key)
    await audit(
        uow,
        deps,
        Caller(team_id=team_id, actor_id=actor_id),
        "api_key.create",
        project_id=key.project_id,
        resource_id=key.id,
        details={"scopes": sorted(key.scopes), "name": key.name},
    )


async def create_api_key(
    deps: Deps,
    *,
    team_id: str,
    project_id: str | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    name: str | None = None,
    expires_at: datetime | None = None,
    actor_id: str = SYSTEM_ACTOR,
) -> IssuedKey:
    issued = _new_key(
        deps,
        team_id=team_id,
        project_id=project_id,
        scopes=scopes,
        name=name,
        expires_at=expires_at,
        actor_id=actor_id,
    )
    async with deps.storage.unit_of_work() as uow:
        await _store_key(uow, deps, issued, actor_id)
    return issued


async def verify_api_key(deps: Deps, raw_key: str, *, request_id: str | None = None) -> Caller:
    """Resolve a bearer key to a caller, or raise ``Forbidden`` (unknown, revoked,
    expired, or not bound to a team)."""
    if not raw_key:
        raise Forbidden(UNKNOWN_KEY)
    async with deps.storage.unit_of_work() as uow:
        key = await uow.api_keys.get_by_hash(hash_key(raw_key))
    return caller_for_key(deps, key, request_id=request_id)


def caller_for_key(deps: Deps, key: ApiKey | None, *, request_id: str | None) -> Caller:
    """The caller a stored key stands for, or ``Forbidden`` saying why not: unknown,
    revoked or expired (the message never repeats the key)."""
    if key is None:
        raise Forbidden(UNKNOWN_KEY)
    refusal = key.refusal(deps.clock.now())
    if refusal is not None:
        raise Forbidden(refusal)
    if key.team_id is None:
        raise Forbidden("API key is not bound to a team")
    return Caller(
        team_id=key.team_id,
        project_id=key.project_id,
        api_key_id=key.id,
        actor_id=key.actor_id,
        request_id=request_id,
        scopes=key.scopes,
    )


async def list_api_keys(
    deps: Deps,
    *,
    team_id: str | None = None,
    project_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[ApiKey], int]:
    page = _check_page(limit, offset)
    async with deps.storage.unit_of_work() as uow:
        return await uow.api_keys.list(team_id, project_id, page)


async def _load_key(deps: Deps, key_id: str, team_id: str | None) -> ApiKey:
    async with deps.storage.unit_of_work() as uow:
        key = await uow.api_keys.get_unscoped(key_id)
    if key is None or (team_id is not None and key.team_id != team_id):
        raise NotFound("API key not found")
    return key


async def revoke_api_key(
    deps: Deps, key_id: str, *, team_id: str | None = None, actor_id: str = SYSTEM_ACTOR
) -> ApiKey:
    """Revoke a key; the next request made with it is refused. Revoking twice is a no-op."""
    key = await _load_key(deps, key_id, team_id)
    if key.revoked_at is not None:
        return key
    now = deps.clock.now()
    revoked = attrs.evolve(key, revoked_at=now, updated_at=now)
    async with deps.storage.unit_of_work() as uow:
        await uow.api_keys.save(revoked)
        await audit(
            uow,
            deps,
            Caller(team_id=key.team_id or "", actor_id=actor_id),
            "api_key.revoke",
            team_id=key.team_id,
            project_id=key.project_id,
            resource_id=key.id,
        )
    return revoked


async def rotate_api_key(
    deps: Deps, key_id: str, *, team_id: str | None = None, actor_id: str = SYSTEM_ACTOR
) -> IssuedKey:
    """Issue a new key with the same team, project, scopes and name; revoke the old one."""
    old = await _load_key(deps, key_id, team_id)
    if old.revoked_at is not None:
        raise InvalidInput.field("key_id", "is revoked; create a new key instead")
    if old.team_id is None:
        raise InvalidInput.field("key_id", "is not bound to a team")
    issued = _new_key(
        deps,
        team_id=old.team_id,
        project_id=old.project_id,
        scopes=old.scopes,
        name=old.name,
        expires_at=old.expires_at,
        actor_id=actor_id,
    )
    now = deps.clock.now()
    # One transaction: a crash never leaves two live keys, or none.
    async with deps.storage.unit_of_work() as uow:
        await _store_key(uow, deps, issued, actor_id)
        await uow.api_keys.save(attrs.evolve(old, revoked_at=now, updated_at=now))
        await audit(
            uow,
            deps,
            Caller(team_id=old.team_id, actor_id=actor_id),
            "api_key.rotate",
            project_id=old.project_id,
            resource_id=old.id,
            details={"replacedBy": issued.key.id},
        )
    return issued


async def list_visible_projects(
    deps: Deps, caller: Caller, *, limit: int = 50, offset: int = 0
) -> tuple[Sequence[Project], int]:
    """The projects a caller may see: its team's, or only its own for a project key."""
    require(caller.scopes, Need.READ_PROJECTS)
    page = _check_page(limit, offset)
    async with deps.storage.unit_of_work() as uow:
        if caller.project_id is None:
            return await uow.projects.list(caller.team_id, page)
        own = await uow.projects.get(caller.team_id, caller.project_id)
    rows = [own] if own is not None else []
    return rows[page.offset : page.offset + page.limit], len(rows)
