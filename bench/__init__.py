"""`python -m bench` (`make bench`): every hot path measured against a baseline run side by
side in the same command, on the same machine, with the same server settings.

Scenarios: single POST ingest, batch ingest, `GET /stats` at 1,000 and
1,000,000 events, the projector's fold of a 1,000,000-event log against a naive projector,
and freshness (POST 201 -> visible in `/stats`) at a steady 1,000 tx/s. Results go to
`.local/bench/*.json` and one Markdown table on stdout.
"""
