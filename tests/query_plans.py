"""Rows a statement touches, read from PostgreSQL's own plan (`EXPLAIN (ANALYZE, FORMAT
JSON)`): for the query API's row-bound test and the window-read benchmark."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import asyncpg


def rows_touched(plan: dict[str, Any]) -> Counter[str]:
    """Rows each table's scans read: returned plus discarded by filters, over all loops."""
    touched: Counter[str] = Counter()

    def walk(node: dict[str, Any]) -> None:
        relation = node.get("Relation Name")
        if relation is not None:
            per_loop = (
                node["Actual Rows"]
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            touched[relation] += round(per_loop * node["Actual Loops"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return touched


async def explain(conn: asyncpg.Connection[Any], sql: str, *args: Any) -> Counter[str]:
    raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    document = json.loads(raw) if isinstance(raw, str) else raw
    return rows_touched(document[0]["Plan"])
