"""Replays recorded ARR/STS traffic through the real ArrClient.

A recording (Azure SDK test-proxy format: ``{"Entries": [{RequestUri, RequestMethod, RequestBody, StatusCode,
ResponseHeaders, ResponseBody}, ...]}``) is played in order by :class:`RecordedTransport`: every request the client
sends must be the next entry's (method, host, path, api-version, JSON body), and every entry must be used.
:func:`replay` drives the client's public operations from the recorded ARR requests and checks each answer
against the recorded response, field by field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from arr_core import (
    AccountKeyCredential,
    ArrClient,
    ArrError,
    RenderingSession,
    RetryPolicy,
    StaticAccessToken,
    ThrottledError,
    parse_retry_after,
)
from arr_core.arr.validation import check_lease_minutes, check_size
from arr_core.errors import error_class_for_status

REPLAY_KEY = "replay-account-key"
REPLAY_STATIC_TOKEN = "replay-static-token"

# recorded JSON name -> RenderingSession attribute
SESSION_FIELDS = {
    "id": "id",
    "status": "status",
    "size": "size",
    "maxLeaseTimeMinutes": "lease_minutes",
    "elapsedTimeMinutes": "elapsed_minutes",
    "hostname": "hostname",
    "handshakePort": "handshake_port",
    "arrInspectorPort": "arr_inspector_port",
    "teraflops": "teraflops",
    "creationTime": "created_at",
    "error": "error",
}


def _headers(raw: dict[str, Any]) -> dict[str, str]:
    # .NET recordings store header values as lists; recorded Content-Length does not match sanitized bodies.
    out = {}
    for key, value in (raw or {}).items():
        if key.lower() in ("content-length", "transfer-encoding", "content-encoding"):
            continue
        out[key] = ", ".join(value) if isinstance(value, list) else str(value)
    return out


def _body_value(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            return raw
    return raw


@dataclass
class Entry:
    index: int
    method: str
    url: httpx.URL
    request_body: Any
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def is_sts(self) -> bool:
        return self.url.path.lower().endswith("/token") and "/accounts/" in self.url.path.lower()

    def response(self) -> httpx.Response:
        body = self.body
        if body in (None, "", []) or self.status == 204:
            content = b""
        elif isinstance(body, str):
            content = body.encode()
        else:
            content = json.dumps(body).encode()
        return httpx.Response(self.status, headers=self.headers, content=content)


def load_entries(path: Path) -> list[Entry]:
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    entries = []
    for i, raw in enumerate(data["Entries"]):
        entries.append(Entry(
            index=i,
            method=raw["RequestMethod"].upper(),
            url=httpx.URL(raw["RequestUri"]),
            request_body=_body_value(raw.get("RequestBody")),
            status=int(raw["StatusCode"]),
            headers=_headers(raw.get("ResponseHeaders", {})),
            body=_body_value(raw.get("ResponseBody")),
        ))
    return entries


@dataclass
class RecordedTransport(httpx.AsyncBaseTransport):
    """Serves recorded responses in order; any request that is not the next recorded one fails the test."""

    entries: list[Entry]
    position: int = 0
    authorizations: list[tuple[Entry, str]] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.position >= len(self.entries):
            raise AssertionError(f"unexpected request {request.method} {request.url}: all entries were used")
        entry = self.entries[self.position]
        where = f"entry {entry.index} ({entry.method} {entry.url.path})"
        assert request.method == entry.method, f"{where}: method {request.method}"
        assert request.url.host == entry.url.host, f"{where}: host {request.url.host}"
        assert request.url.path == entry.url.path, f"{where}: path {request.url.path}"
        assert request.url.params.get("api-version") == entry.url.params.get("api-version"), (
            f"{where}: api-version {request.url.params.get('api-version')}"
        )
        await request.aread()
        sent = json.loads(request.content) if request.content else None
        assert sent == entry.request_body, f"{where}: body {sent!r} != recorded {entry.request_body!r}"
        self.authorizations.append((entry, request.headers.get("Authorization", "")))
        self.position += 1
        return entry.response()


def assert_session_matches(session: RenderingSession, recorded: dict[str, Any], where: str) -> int:
    """Every recorded field equals the model's; returns the number of fields compared."""
    compared = 0
    for key, value in recorded.items():
        attr = SESSION_FIELDS.get(key)
        if attr is None:
            assert (session.model_extra or {}).get(key) == value, f"{where}: extra field {key} lost"
        else:
            got = getattr(session, attr)
            if key in ("status", "size"):
                assert got.value.lower() == str(value).lower(), f"{where}: {key} {got} != {value}"
            elif key in ("handshakePort", "arrInspectorPort"):
                assert got == (value or None), f"{where}: {key} {got} != {value}"
            elif key == "creationTime":
                expected = datetime.fromisoformat(value)
                expected = expected if expected.tzinfo else expected.replace(tzinfo=timezone.utc)
                assert got == expected, f"{where}: creationTime {got} != {value}"
            elif key == "error":
                if value is None:
                    assert got is None, f"{where}: error {got} != None"
                else:
                    assert (got.code, got.message) == (value["code"], value["message"]), f"{where}: error"
            else:
                assert got == value, f"{where}: {key} {got!r} != {value!r}"
        compared += 1
    for key, attr in SESSION_FIELDS.items():
        if key not in recorded:
            assert getattr(session, attr) is None, f"{where}: {attr} should be None when {key} is absent"
    return compared


def assert_error_matches(error: ArrError, entry: Entry) -> None:
    where = f"entry {entry.index}"
    assert isinstance(error, error_class_for_status(entry.status)), f"{where}: {type(error).__name__}"
    assert error.status_code == entry.status, f"{where}: status {error.status_code}"
    recorded_error = entry.body.get("error") if isinstance(entry.body, dict) else None
    expected_code = recorded_error["code"] if recorded_error else error_class_for_status(entry.status).default_code
    assert error.code == expected_code, f"{where}: code {error.code} != {expected_code}"
    if recorded_error:
        assert error.message == recorded_error["message"], f"{where}: message"
    assert error.correlation_id == entry.headers.get("MS-CV"), f"{where}: MS-CV"
    if isinstance(error, ThrottledError):
        assert error.retry_after == parse_retry_after(entry.headers.get("Retry-After"))


@dataclass
class ReplayResult:
    entries: int
    operations: int
    fields_compared: int


def _client_for(entries: list[Entry], transport: RecordedTransport) -> ArrClient:
    arr = [e for e in entries if not e.is_sts]
    sts = [e for e in entries if e.is_sts]
    first = arr[0] if arr else sts[0]
    parts = first.url.path.split("/")
    account_id = parts[parts.index("accounts" if "accounts" in parts else "Accounts") + 1]
    endpoint = f"{arr[0].url.scheme}://{arr[0].url.host}" if arr else "https://remoterendering.invalid"
    if sts:
        sts_endpoint = f"{sts[0].url.scheme}://{sts[0].url.host}"
        domain = sts[0].url.host.removeprefix("sts.")
        credential: Any = AccountKeyCredential(REPLAY_KEY)
    else:
        sts_endpoint, domain, credential = None, "eastus.mixedreality.azure.com", StaticAccessToken(REPLAY_STATIC_TOKEN)
    return ArrClient(
        endpoint, account_id, domain, credential,
        sts_endpoint=sts_endpoint,
        http_client=httpx.AsyncClient(transport=transport),
        retry=RetryPolicy.off(),
        api_version=(arr[0].url.params.get("api-version") if arr else "2021-01-01"),
        check_arguments=False,
    )


def _locally_refused(entry: Entry) -> bool:
    body = entry.request_body or {}
    try:
        if "maxLeaseTimeMinutes" in body:
            check_lease_minutes(body["maxLeaseTimeMinutes"])
        if "size" in body:
            check_size(body["size"])
    except ArrError:
        return True
    return False


async def _drive(client: ArrClient, entry: Entry) -> Any:
    parts = entry.url.path.strip("/").split("/")  # accounts, id, sessions, [sid, [:stop]]
    session_id = parts[3] if len(parts) > 3 else None
    body = entry.request_body or {}
    if entry.is_sts:
        return await client.tokens.refresh()
    if entry.method == "PUT":
        return await client.create_session(session_id, size=body["size"], lease_minutes=body["maxLeaseTimeMinutes"])
    if entry.method == "PATCH":
        return await client.update_session(session_id, lease_minutes=body["maxLeaseTimeMinutes"])
    if entry.method == "POST":
        return await client.stop_session(session_id)
    if session_id is None:
        return [s async for s in client.list_sessions()]
    return await client.get_session(session_id)


async def replay(path: Path) -> ReplayResult:
    """Play one recording through the client; raises AssertionError at the first difference."""
    entries = load_entries(path)
    transport = RecordedTransport(entries)
    fields = operations = 0
    async with _client_for(entries, transport) as client:
        while transport.position < len(entries):
            start = transport.position
            # An ARR call first fetches its STS token: the STS entries before it belong to that call.
            lead = entries[start]
            if lead.is_sts and any(not e.is_sts for e in entries[start + 1 :]):
                lead = next(e for e in entries[start:] if not e.is_sts)
            try:
                result, error = await _drive(client, lead), None
            except ArrError as exc:
                result, error = None, exc
            used = entries[start : transport.position]
            assert used, f"entry {lead.index}: the operation sent nothing"
            final = used[-1]
            operations += 1
            if not lead.is_sts and _locally_refused(lead):
                # What the client refuses before sending, ARR refused too: the client never blocks a good call.
                assert final.status in (400, 422), f"entry {lead.index}: client refuses what ARR accepted"
            if error is not None:
                assert final.status >= 400, f"entry {final.index}: unexpected {error!r}"
                assert_error_matches(error, final)
                continue
            assert final.status < 400, f"entry {final.index}: recorded {final.status} but the call succeeded"
            if lead.is_sts:
                assert result == final.body["AccessToken"]
            elif isinstance(result, RenderingSession):
                fields += assert_session_matches(result, final.body, f"entry {final.index}")
            elif isinstance(result, list):
                recorded = [s for e in used if not e.is_sts for s in (e.body or {}).get("sessions", [])]
                assert len(result) == len(recorded), f"entry {final.index}: {len(result)} sessions"
                for got, want in zip(result, recorded, strict=True):
                    fields += assert_session_matches(got, want, f"entry {final.index}")
            else:
                assert result is None and final.status == 204
        # The credential reached the STS as id:key, and every ARR call carried the token the STS issued.
        issued = None
        for entry, authorization in transport.authorizations:
            if entry.is_sts:
                account_id = entry.url.path.split("/")[2]
                assert authorization == f"Bearer {account_id}:{REPLAY_KEY}"
                if entry.status == 200:
                    issued = entry.body["AccessToken"]
            else:
                assert authorization == f"Bearer {issued or REPLAY_STATIC_TOKEN}"
    return ReplayResult(len(entries), operations, fields)
