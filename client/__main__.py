"""`python -m client`: the `txstats` CLI."""

from client.cli import main

raise SystemExit(main())
