"""Security headers on every response the server sends (pages, API, Socket.IO, files, errors).

- ``Content-Security-Policy``: the web app's page may load scripts, styles and fonts only from
  this server (no inline script, no eval) and talk only to it; every other response (JSON,
  CSV, files) may load nothing at all. ``frame-ancestors 'none'`` (and ``X-Frame-Options``
  for old browsers) keeps every page out of other sites' frames (clickjacking).
- ``X-Content-Type-Options: nosniff``: a browser never runs a JSON or CSV response as script.
- ``Referrer-Policy: no-referrer``: links followed out of a chat do not tell the other site
  which class page they came from.
- ``Cache-Control: no-store`` on the API and Socket.IO (tokens, messages, phone numbers):
  nothing personal stays in a shared computer's cache or a proxy's.
- ``Server: Homeroom``: no versions to match against vulnerability lists.
"""

from __future__ import annotations

from aiohttp import web

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
PRIVATE_PREFIXES = ("/api/", "/socket.io")


def page_headers() -> dict[str, str]:
    """The web app's page sets its own policy (the one that lets it run)."""
    return {"Content-Security-Policy": PAGE_CSP}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", OTHER_CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Server"] = "Homeroom"
    if request.path.startswith(PRIVATE_PREFIXES):
        headers["Cache-Control"] = "no-store"


def install(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
