"""`python -m shared.devtoken`: print a development bearer token signed with `JWT_SECRET`."""

from __future__ import annotations

import argparse
import sys

from shared.auth import SCOPE_READ, SCOPE_TRANSACTIONS_READ, SCOPE_WRITE, mint_token
from shared.settings import JwtSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sub", default="dev-producer", help="the token's subject")
    parser.add_argument(
        "--scope",
        action="append",
        help=f"repeatable; default {SCOPE_WRITE}, {SCOPE_READ}, {SCOPE_TRANSACTIONS_READ}",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    args = parser.parse_args(argv)
    scopes = args.scope or [SCOPE_WRITE, SCOPE_READ, SCOPE_TRANSACTIONS_READ]
    token = mint_token(JwtSettings(), subject=args.sub, scopes=scopes, ttl_seconds=args.ttl)
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
