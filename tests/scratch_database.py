"""Scratch PostgreSQL databases for tests and benchmarks: create one (migrated by its owner,
its roles granted), drop it, and the URL of each role on it.

As in production, the owner (the URL the tests are given, `DATABASE_URL`) migrates, the
projector connects as `txstats_projector` and the query API as `txstats_query`
(docs/operations.md, PostgreSQL roles). The local stack creates those roles; on a server where
the given user may create roles (testcontainers' superuser) they are created here.

Test and bench support, not service code: the services never migrate (`python -m projector
migrate` does, `shared.database.migrate`)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared.database import Roles, migrate
from shared.settings import DEFAULT_PROJECTOR_ROLE, DEFAULT_QUERY_ROLE

ROLES = Roles(projector=DEFAULT_PROJECTOR_ROLE, query=DEFAULT_QUERY_ROLE)
# Only where this code creates the roles (a throwaway server); the local stack's trust
# authentication ignores it.
ROLE_PASSWORD = "scratch-role-password"


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def as_role(url: str, role: str) -> str:
    """`url` connecting as `role` (e.g. `ROLES.query`) instead of its user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(role)}:{quote(ROLE_PASSWORD)}@{host}"))


async def ensure_roles(admin: asyncpg.Connection[Any]) -> None:
    """Create the services' roles when missing, if `admin` may; else say who should."""
    missing = [
        role
        for role in (ROLES.projector, ROLES.query)
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    ]
    if not missing:
        return
    if not await admin.fetchval(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
    ):
        msg = f"roles {missing} are missing: scripts/stack.sh pg-up creates them"
        raise RuntimeError(msg)
    for role in missing:
        await admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{ROLE_PASSWORD}'")


async def create_database(admin_url: str, prefix: str) -> str:
    """A new database `<prefix>_<random>`, migrated by `admin_url`'s user (its owner) with the
    services' roles granted; its URL as that owner (tests and benchmarks)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await ensure_roles(admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, ROLES)
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, url: str) -> bool:
    """Drop the database `url` names. FORCE cannot end an autovacuum worker for a
    non-superuser, so retry for ten seconds; False when it is still there."""
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(admin_url, timeout=30)
    try:
        for _ in range(50):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                await asyncio.sleep(0.2)
            else:
                return True
    finally:
        await admin.close()
    return False
