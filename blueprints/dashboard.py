"""The dashboard: one page for people, served by the app itself (no build step, no CDN).

    GET /api/dashboard            Dashboard       the page; anonymous (a static template: no data, no key)
    GET /api/dashboard/{asset}    DashboardAsset  its script and style sheet; anonymous (static, no data)

Everything the page shows comes from the API, which needs the function key as usual; the page itself holds no data,
so it is served without one. That is what makes a reload work: the Functions host answers a keyed route without a
key itself (a 401, with an empty body in Azure) before any code of ours could say what to do. The page's script
takes the key from ``?code=KEY`` (read once, then stripped from the address bar) or, when the API answers 401,
from a small form on the page. It keeps the key in the tab's ``sessionStorage`` (a reload of the tab keeps it,
closing the tab forgets it; never a cookie, never the address bar), and sends it only as ``x-functions-key`` on
the API calls it makes. The assets cannot carry a key either (a ``<script src>`` sends no header, and a key in the
markup is what we avoid); they are the same for everyone.

Everything is sent with a strict Content-Security-Policy (no inline script or style, nothing from elsewhere),
``nosniff`` and ``no-referrer`` (the page's own URL carries the key until its script has removed it). Asset URLs
carry a content hash (``?v=``): a matching one is cached for a year, any other briefly.
"""

from __future__ import annotations

import functools
import hashlib
import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from .http import Api, problem

bp = Api()

ASSET_DIR = Path(__file__).with_name("dashboard_assets")
PAGE = "page.html"  # a template, not an asset: served only as the page
ASSET_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}  # the only files served
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
LONG_CACHE = "public, max-age=31536000, immutable"
SHORT_CACHE = "public, max-age=300"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # the first 16 hex digits of the body's SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@functools.cache
def _load(name: str) -> Asset:
    body = (ASSET_DIR / name).read_bytes()
    return Asset(body, ASSET_TYPES[name], hashlib.sha256(body).hexdigest()[:16])


def asset(name: str) -> Asset | None:
    """A served asset by its exact name; None for any other name (no path is ever built from the request)."""
    return _load(name) if name in ASSET_TYPES else None


@functools.cache
def _template() -> str:
    return (ASSET_DIR / PAGE).read_text(encoding="utf-8")


def render_page(page_path: str) -> str:
    """The page, its asset links under ``page_path`` (``/api/dashboard``) with their content hashes."""
    base = html.escape(page_path.rstrip("/"), quote=True)
    text = _template().replace("{{base}}", base)
    for name in ASSET_TYPES:
        text = text.replace(f"{{{{v:{name}}}}}", _load(name).version)
    return text


@bp.endpoint("Dashboard", "GET", "dashboard", anonymous=True)
async def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    page = render_page(urlsplit(req.url).path or "/api/dashboard")
    return func.HttpResponse(page, status_code=200, mimetype="text/html", charset="utf-8",
                             headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


@bp.endpoint("DashboardAsset", "GET", "dashboard/{asset}", anonymous=True)
async def dashboard_asset(req: func.HttpRequest) -> func.HttpResponse:
    found = asset(req.route_params.get("asset", ""))
    if found is None:
        return problem(404, "Not found", "the dashboard has no such file", headers=SECURITY_HEADERS)
    cache = LONG_CACHE if req.params.get("v") == found.version else SHORT_CACHE
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": found.etag}
    if found.etag in (req.headers.get("if-none-match") or ""):
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(found.body, status_code=200, mimetype=found.content_type, charset="utf-8",
                             headers=headers)
