"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against devhost + emulator + Azurite.

The browser is the system's ``chromium`` (``make browser``, a dependency of ``make test``, installs Debian's
package); Playwright never downloads one. A missing chromium fails the run: nothing here is skipped.

Screenshots go to ``test-output/dashboard/`` (git-ignored); ``UPDATE_README_SCREENSHOT=1`` also copies the desktop
one to ``docs/dashboard.png``, the picture of the dashboard in ``docs/operations.md``.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, Azurite, Emulator, Host, function_app_env, start, stop
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from devhost.stack import free_port

OUTPUT = ROOT / "test-output" / "dashboard"
README_SHOT = ROOT / "docs" / "dashboard.png"
SESSIONS_EVERY = 15  # seconds: the page reads ARR's list no more often than this
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 667}
MAX_SESSION_MINUTES = 120

# Every visible piece of text and its effective background, as the browser computed them: [text, ratio, where].
CONTRAST = """() => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g) || []; return m.map(Number); };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (el) => {
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
      if (n.tagName === 'DIALOG') return parse(getComputedStyle(n).backgroundColor).slice(0, 3);
    }
    return parse(getComputedStyle(document.body).backgroundColor).slice(0, 3);
  };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    if (!t.textContent.trim() || !el || el.closest('.visually-hidden, title, desc')) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || !el.checkVisibility({ visibilityProperty: true })) continue;
    const style = getComputedStyle(el);
    const fg = parse(el instanceof SVGElement ? style.fill : style.color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(el))].sort((x, y) => y - x);
    out.push([t.textContent.trim().slice(0, 40), (a + 0.05) / (b + 0.05), el.tagName + '.' + el.className]);
  }
  return out;
}"""

# Controls without an accessible name, inputs without a label, tables without a caption or header scope.
A11Y_BASICS = """() => {
  const problems = [];
  for (const input of document.querySelectorAll('input, select, textarea')) {
    if (!(input.labels && input.labels.length) && !input.getAttribute('aria-label')) {
      problems.push('unlabelled ' + input.id);
    }
  }
  for (const button of document.querySelectorAll('button')) {
    if (!(button.getAttribute('aria-label') || button.textContent.trim())) problems.push('nameless button');
  }
  for (const table of document.querySelectorAll('table')) {
    if (!table.caption || !table.caption.textContent.trim()) problems.push('no caption ' + table.id);
    for (const th of table.querySelectorAll('thead th')) {
      if (th.getAttribute('scope') !== 'col') problems.push('scope ' + table.id);
    }
  }
  if (!document.querySelector('[role=status][aria-live]')) problems.push('no live region');
  if (document.documentElement.lang !== 'en') problems.push('no lang');
  return problems;
}"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make browser` (make test does; it runs "
                    "`apt-get install chromium`). Playwright's own browser download is not used.")
    return path


def save(page: Page, name: str, *, full_page: bool = True) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@dataclass
class Traffic:
    """What the page sent and logged."""

    requests: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("request", lambda r: self._request(r))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def _request(self, request: Request) -> None:
        self.requests.append((time.monotonic(), request.method, request.url, request.headers))

    def list_reads(self) -> list[float]:
        """When the page asked for GET /api/sessions (each one is a call to ARR)."""
        return [at for at, method, url, _ in self.requests
                if method == "GET" and re.search(r"/api/sessions(\?|$)", url)]


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"ARR_RATE_STANDARD_PER_HOUR": "3.0", "ARR_RATE_PREMIUM_PER_HOUR": "12.0",
            "ARR_MAX_SESSION_MINUTES": str(MAX_SESSION_MINUTES)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


def open_dashboard(browser: Browser, host: Host, traffic: Traffic, **context: Any) -> Page:
    page = browser.new_context(locale="en-US", timezone_id="UTC", **context).new_page()
    traffic.watch(page)
    response = page.goto(f"{host.url}/api/dashboard?code={host.key}")
    assert response is not None and response.status == 200
    return page


def active_row(page: Page, session_id: str) -> Any:
    return page.locator(f'#active tbody tr[data-id="{session_id}"]')


def test_page_and_assets_are_served_with_a_key_and_strict_headers(app_host: Host) -> None:
    """The page needs the function key (401 without); assets are anonymous, typed, cached, and under a strict CSP."""
    assert httpx.get(f"{app_host.url}/api/dashboard").status_code == 401
    assert httpx.get(f"{app_host.url}/api/dashboard", params={"code": "wrong"}).status_code == 401
    page = httpx.get(f"{app_host.url}/api/dashboard", params={"code": app_host.key})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert app_host.key not in page.text  # the page does not echo the key it was opened with
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline for the CSP to refuse
    links = dict(re.findall(r'/api/dashboard/(dashboard\.(?:js|css))\?v=([0-9a-f]{16})"', page.text))
    assert set(links) == {"dashboard.js", "dashboard.css"}

    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        fresh = httpx.get(f"{app_host.url}/api/dashboard/{name}", params={"v": links[name]})
        assert fresh.status_code == 200 and fresh.headers["content-type"] == f"{kind}; charset=utf-8"
        assert fresh.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert fresh.headers["x-content-type-options"] == "nosniff"
        unversioned = httpx.get(f"{app_host.url}/api/dashboard/{name}")
        assert unversioned.headers["cache-control"] == "public, max-age=300"
        again = httpx.get(f"{app_host.url}/api/dashboard/{name}", headers={"If-None-Match": fresh.headers["etag"]})
        assert again.status_code == 304 and not again.content
    for name in ("page.html", "nothing.js", "dashboard.JS", "%2e%2e", "..%2Fdashboard.py"):
        missing = httpx.get(f"{app_host.url}/api/dashboard/{name}")
        assert missing.status_code == 404, name
        if "%2F" not in name:  # a slash: no route matches at all (the host's own empty 404)
            assert missing.headers["content-type"].startswith("application/problem+json"), name


def test_dashboard_in_chromium(browser: Browser, app_host: Host, http: httpx.Client, emulator: Emulator,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """Open with ?code (then gone), see a started session appear, extend and stop it by keyboard and mouse, see
    the chart count its billed minutes, the cleanup run and what it stopped; a phone-sized screen; accessibility."""
    emulator.reset(startupSeconds=0)
    shots: list[Path] = []
    traffic = Traffic()
    page = open_dashboard(browser, app_host, traffic, viewport=DESKTOP)

    # The key is read, then gone from the address bar and the page; it rides only in the header of API calls.
    expect(page).to_have_url(f"{app_host.url}/api/dashboard")
    expect(page.locator("#active tbody")).to_contain_text("No active sessions.")
    assert app_host.key not in page.content()

    # A session started through the API appears by itself (no click) at the next read.
    started = http.post("/api/sessions", json={"leaseMinutes": 60, "requestedBy": "ana@contoso", "size": "Standard"})
    assert started.status_code == 202, started.text
    session_id = started.json()["id"]
    row = active_row(page, session_id)
    expect(row).to_be_visible(timeout=(SESSIONS_EVERY + 10) * 1000)
    expect(row).to_contain_text("Ready")
    expect(row).to_contain_text("ana@contoso")
    expect(row).to_contain_text("60 min left")
    expect(page.locator("#announcer")).to_have_text(f"Session {session_id} is Ready.")

    # 42 minutes pass at ARR; extend by 15 (mouse): the lease is 75, 33 minutes left.
    emulator.advance(42 * 60)
    page.get_by_role("button", name=f"Extend session {session_id}").click()
    dialog = page.locator("#extend-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Minutes to add")).to_be_focused()
    page.get_by_label("Minutes to add").fill("15")
    dialog.get_by_role("button", name="Extend lease").click()
    expect(dialog).to_be_hidden()
    expect(row).to_contain_text("33 min left")
    expect(page.locator("#announcer")).to_have_text(f"Session {session_id} now has a lease of 75 min.")
    assert http.get(f"/api/sessions/{session_id}").json()["leaseMinutes"] == 75

    # Stop by keyboard: Escape cancels (the session stays, focus returns); Enter in the dialog confirms.
    stop = page.get_by_role("button", name=f"Stop session {session_id}")
    stop.focus()
    page.keyboard.press("Enter")
    stop_dialog = page.locator("#stop-dialog")
    expect(stop_dialog).to_be_visible()
    expect(stop_dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice first
    page.keyboard.press("Escape")
    expect(stop_dialog).to_be_hidden()
    expect(stop).to_be_focused()
    expect(row).to_be_visible()
    page.keyboard.press("Enter")
    expect(stop_dialog).to_be_visible()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_label("Reason (optional, kept in history)")).to_be_focused()
    page.keyboard.type("review done")
    page.keyboard.press("Enter")
    expect(row).to_have_count(0)
    expect(page.locator("#active tbody")).to_contain_text("No active sessions.")
    expect(page.locator("#announcer")).to_have_text(f"Session {session_id} is Stopped.")
    read = http.get(f"/api/sessions/{session_id}").json()
    assert read["status"] == "Stopped" and read["billedMinutes"] == 42 and read["stopReason"] == "review done"

    # The chart's bar for today shows the 42 billed minutes (its value, not its pixels); so do the table and sizes.
    today = datetime.now(UTC).date().isoformat()
    bar = page.locator(f'#day-chart g.bar[data-day="{today}"]')
    expect(bar).to_have_attribute("data-minutes", "42")
    expect(bar.locator("text.value")).to_have_text("42")
    expect(page.locator("#day-chart svg text").last).to_have_text("today")
    expect(page.locator(f'#usage-table tr[data-day="{today}"]')).to_contain_text("42")
    expect(page.locator('#size-chart g.bar[data-size="Standard"]')).to_have_attribute("data-minutes", "42")
    expect(page.locator("#size-chart")).to_contain_text("$2.10")  # 42 min at 3.00 an hour
    expect(page.locator("#usage-summary")).to_contain_text("42 min billed in 1 session. Estimated cost: $2.10.")
    expect(page.locator(f'#history tr[data-id="{session_id}"]')).to_contain_text("Stopped")
    expect(page.locator(f'#history tr[data-id="{session_id}"]')).to_contain_text("review done")

    # The history filters: another caller's sessions only -> none of these.
    page.get_by_label("Requested by").fill("somebody else")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#history tbody")).to_contain_text("No sessions match.")
    page.get_by_role("button", name="Clear").click()
    expect(page.locator(f'#history tr[data-id="{session_id}"]')).to_be_visible()

    # Pacing: the page read ARR's list no more often than every 15 s, and not at all while hidden.
    reads = traffic.list_reads()
    assert len(reads) >= 2
    assert all(b - a >= SESSIONS_EVERY - 0.5 for a, b in itertools.pairwise(reads)), reads
    page.evaluate("""() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    hidden_at = time.monotonic()
    swept = http.post("/api/sessions", json={"leaseMinutes": 180, "requestedBy": "ci-pipeline"}).json()["id"]
    emulator.advance(MAX_SESSION_MINUTES * 60)
    kept = http.post("/api/sessions", json={"leaseMinutes": 240, "requestedBy": "lena@contoso", "size": "Premium",
                                            "keepAlive": True}).json()["id"]
    emulator.advance(25 * 60)
    cleanup = http.post("/api/cleanup")  # the lease cleanup: the first ran past ARR_MAX_SESSION_MINUTES
    assert cleanup.status_code == 200 and [a["id"] for a in cleanup.json()["stopped"]] == [swept], cleanup.text
    page.wait_for_timeout((SESSIONS_EVERY + 2) * 1000)
    assert [at for at in traffic.list_reads() if at > hidden_at] == []
    page.evaluate("""() => { Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    expect(active_row(page, kept)).to_be_visible(timeout=5000)  # due long ago: read at once when visible again
    expect(active_row(page, kept)).to_contain_text("kept overnight")
    expect(active_row(page, swept)).to_have_count(0)

    # The last cleanup runs, and what they stopped (read every minute; the refresh button reads now).
    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator("#runs tbody tr").first).to_contain_text(swept)
    expect(page.locator("#runs tbody tr").first).to_contain_text("lease")
    expect(page.locator("#runs tbody tr").first).to_contain_text(f"maximum {MAX_SESSION_MINUTES}")

    # Accessibility basics and contrast, in both colour schemes; visible keyboard focus.
    assert page.evaluate(A11Y_BASICS) == []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        measured = page.evaluate(CONTRAST)
        assert len(measured) > 60  # every cell, label, button and chart label
        low = [(text, round(ratio, 2), where) for text, ratio, where in measured if ratio < 4.5]
        assert low == [], (scheme, low)
        if scheme == "dark":
            shots.append(save(page, "desktop-dark", full_page=False))
    page.emulate_media(color_scheme="light")
    page.get_by_role("link", name="Skip to the sessions").focus()
    page.keyboard.press("Tab")
    refresh = page.get_by_role("button", name="Refresh now")
    expect(refresh).to_be_focused()
    outline = refresh.evaluate("b => [getComputedStyle(b).outlineStyle, parseFloat(getComputedStyle(b).outlineWidth)]")
    assert outline[0] == "solid" and outline[1] >= 2

    page.locator("#main").focus()
    shots.append(save(page, "desktop-full"))
    page.evaluate("window.scrollTo(0, 0)")
    shots.append(save(page, "desktop", full_page=False))  # the viewport: 1280x800
    if os.environ.get("UPDATE_README_SCREENSHOT"):  # not on every run: ids and times differ each time
        shutil.copyfile(shots[-1], README_SHOT)
        shots.append(README_SHOT)

    # A phone-sized screen: nothing wider than the screen; the active session is a card with reachable buttons.
    phone = open_dashboard(browser, app_host, traffic, viewport=PHONE, is_mobile=True, has_touch=True)
    expect(active_row(phone, kept)).to_be_visible()
    phone.keyboard.press("Tab")  # the first stop of the keyboard: a skip link, shown when focused
    skip = phone.get_by_role("link", name="Skip to the sessions")
    expect(skip).to_be_focused()
    assert skip.bounding_box()["y"] >= 0  # type: ignore[index]
    phone.keyboard.press("Enter")
    expect(phone.locator("#main")).to_be_focused()
    expect(phone.locator("#day-chart svg")).to_be_visible()
    widths = phone.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]")
    assert widths[0] <= PHONE["width"] and widths[1] <= PHONE["width"], widths
    button = phone.get_by_role("button", name=f"Stop session {kept}")
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 44
    shots.append(save(phone, "phone-full"))
    phone.get_by_role("button", name=f"Extend session {kept}").click()
    expect(phone.locator("#extend-dialog")).to_be_visible()
    shots.append(save(phone, "phone-extend-dialog", full_page=False))
    phone.keyboard.press("Escape")

    # What the page sent: only to the app. The key: in the URL the page was opened with (twice), nowhere else but
    # the header of the API calls; not on the assets' requests, not in the console.
    opened = f"{app_host.url}/api/dashboard?code={app_host.key}"
    assert [url for _, _, url, _ in traffic.requests if app_host.key in url] == [opened, opened]
    for _, _, url, headers in traffic.requests:
        assert url.startswith(f"{app_host.url}/api/"), url
        path = url[len(app_host.url):].split("?")[0]
        if path.startswith("/api/dashboard/"):
            assert "x-functions-key" not in headers, url
        elif path != "/api/dashboard":
            assert headers.get("x-functions-key") == app_host.key, url
    assert not [line for line in traffic.console if app_host.key in line]
    assert not [line for line in traffic.console if line.startswith(("error", "pageerror"))], traffic.console

    with capsys.disabled():
        print("\ndashboard screenshots:", *(f"  {path.relative_to(ROOT)}" for path in shots), sep="\n")


def test_works_on_a_local_host_without_keys(browser: Browser, emulator: Emulator, azurite: Azurite,
                                            table_name: str) -> None:
    """`make run`'s host has no keys: the page opens without ?code and its API calls carry no key header."""
    port = free_port()
    process = start([sys.executable, "-m", "devhost", "--port", str(port), "--settings", "/nonexistent", "--no-timers"],
                    port, function_app_env(emulator, azurite, table_name))
    try:
        traffic = Traffic()
        page = browser.new_context(locale="en-US").new_page()
        traffic.watch(page)
        response = page.goto(f"http://127.0.0.1:{port}/api/dashboard")
        assert response is not None and response.status == 200
        expect(page.locator("#active tbody")).to_contain_text("No active sessions.")
        expect(page.locator("#usage-summary")).to_contain_text("billed in")
        expect(page.locator("#alert")).to_be_hidden()
        api_calls = [headers for _, _, url, headers in traffic.requests if "/api/dashboard" not in url]
        assert api_calls and all("x-functions-key" not in headers for headers in api_calls)
        page.context.close()
    finally:
        stop(process)
