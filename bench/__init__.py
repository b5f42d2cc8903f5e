"""`python -m bench` (`make bench`): every hot path measured against a baseline run side by
side in the same command, on the same machine, with the same server settings.

Scenarios: single POST ingest, batch ingest, `GET /stats` at 1,000 and
1,000,000 events, the projector's fold of a 1,000,000-event log against a naive projector,
freshness (POST 201 -> visible in `/stats`) and the stream at a steady 1,000 tx/s. Each run
goes to `.local/bench/` (JSON and its Markdown page) and its table to stdout; `make figures`
(`bench/figures.py`) publishes the latest full run to docs/figures/, with the capacity plan
derived from it (`bench/sizing.py`, `python -m bench.capacity`).
"""
