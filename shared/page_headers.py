"""The headers of every HTML page we serve (the dashboard, Swagger UI at `/docs`): a
Content-Security-Policy that lets a page load only from its own origin and be framed by no
one, no MIME sniffing, no referrer sent to other sites.

A page's own inline script (Swagger UI's start-up call) is allowed by its SHA-256 hash, so no
other inline script, injected or not, can run.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def inline_script_hashes(html: str) -> tuple[str, ...]:
    """The CSP source of each inline `<script>` of `html` (`'sha256-...'`)."""
    return tuple(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )


def page_headers(*, script_hashes: Iterable[str] = (), data_images: bool = False) -> dict[str, str]:
    """The security headers of one HTML page. `data_images`: the page's CSS draws icons from
    `data:` URLs (Swagger UI does)."""
    images = "'self' data:" if data_images else "'self'"
    policy = "; ".join(
        (
            "default-src 'self'",
            " ".join(("script-src 'self'", *script_hashes)),
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
