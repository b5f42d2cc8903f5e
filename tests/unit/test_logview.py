"""`make run` / `make logs` on a terminal: JSON log lines rendered as text, per service."""

from __future__ import annotations

import json

from shared.logview import view


def test_json_lines_become_text_prefixed_with_their_service() -> None:
    entry = {
        "ts": "2026-11-30T01:48:37.730267+00:00",
        "level": "INFO",
        "logger": "projector.consumer",
        "message": "partitions assigned",
        "partitions": [0, 1],
    }
    lines = [
        "==> /x/.local/logs/projector.log <==\n",
        json.dumps(entry) + "\n",
        "\n",
        "==> /x/.local/logs/command_api.log <==\n",
        "not json\n",
    ]
    assert list(view(lines)) == [
        "projector   | 01:48:37.730 INFO    projector.consumer: partitions assigned"
        "  partitions=[0, 1]",
        "command_api | not json",
    ]
