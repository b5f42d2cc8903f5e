"""Scratch PostgreSQL databases for tests and benchmarks: create one (migrated), drop it.

Test and bench support, not service code: the services only migrate the database they are
given (`shared.database.migrate`)."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.database import migrate


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def create_database(admin_url: str, prefix: str) -> str:
    """A new database `<prefix>_<random>`, migrated; its URL (tests and benchmarks)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
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
