"""Inbound webhooks: routes for the senders people have (Event Grid, Azure Monitor alerts and budgets, Standard
Webhooks, GitHub), each speaking its sender's format and handshake; and the queue function that carries out what
they decided.

Each hook authenticates before it parses: Event Grid and alerts by a function key in the URL (the host checks it;
give each sender a key of that one function), Standard Webhooks and GitHub by their signatures over the raw body.
Each answers within :data:`HOOK_SECONDS`: it records the events and queues their actions (``arr_core.services.hooks``),
200 when nothing is to be done, 202 when something is queued; ``?dryRun=true`` shows what would be done and does
nothing. The rules that map events to actions are the setting ``ARR_HOOK_RULES`` (docs/integrations.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import azure.functions as func

from arr_core.domain.hooks.deliveries import HOOK_QUEUE
from arr_core.domain.hooks.senders import (
    MAX_HOOK_BODY_BYTES,
    HookEvent,
    cloudevents_consent,
    parse_alert,
    parse_event_grid,
    parse_github,
    parse_standard_webhook,
)
from arr_core.domain.hooks.signatures import check_github, check_standard_webhook
from arr_core.errors import InvalidInput
from arr_core.services.context import get_context, load_settings

from .http import Api, app_links, json_body, json_response, parse_json, problem
from .queries import HookQuery, parse_query

log = logging.getLogger("arr_sessions.hooks")
bp = Api()
HOOK_SECONDS = 8.0  # senders wait about 10 s (action groups, GitHub; Event Grid 30 s): answer before they give up


def _value(req: func.HttpRequest) -> tuple[bytes, object]:
    body = json_body(req, MAX_HOOK_BODY_BYTES)
    if not body.strip():
        raise InvalidInput("the body is empty: a webhook delivers JSON", field="body")
    return body, parse_json(body, "body")


async def _receive(req: func.HttpRequest, events: Sequence[HookEvent]) -> func.HttpResponse:
    dry_run = bool(parse_query(req, HookQuery).dry_run)
    context = await get_context()
    receipt = await context.hooks.receive(events, dry_run=dry_run)
    return json_response(receipt, 202 if receipt.queued else 200)


@bp.endpoint("EventGridHook", "POST", "hooks/eventgrid", seconds=HOOK_SECONDS)
async def event_grid(req: func.HttpRequest) -> func.HttpResponse:
    """Event Grid, either schema: the validation handshake (200 with the code, never 202), a subscription's
    deletion (acknowledged), or a batch of events."""
    _, value = _value(req)
    delivery = parse_event_grid(value, dict(req.headers))
    if delivery.kind == "validation":
        log.info("Event Grid subscription validated")
        return json_response({"validationResponse": delivery.validation_code})
    if delivery.kind == "deletion":
        return json_response({"events": []})
    return await _receive(req, delivery.events)


@bp.endpoint("EventGridHandshake", "OPTIONS", "hooks/eventgrid", seconds=HOOK_SECONDS)
async def event_grid_handshake(req: func.HttpRequest) -> func.HttpResponse:
    """CloudEvents' abuse protection: Event Grid asks, with ``WebHook-Request-Origin``, whether it may deliver."""
    consent = cloudevents_consent(dict(req.headers))
    if consent is None:
        return problem(403, "Origin not allowed", "only Event Grid's origins may deliver to this hook")
    return func.HttpResponse(status_code=200, headers=consent)


@bp.endpoint("AlertHook", "POST", "hooks/alerts", seconds=HOOK_SECONDS)
async def alert(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor action groups (the common alert schema) and Cost Management budgets (both schemas)."""
    _, value = _value(req)
    return await _receive(req, [parse_alert(value)])


@bp.endpoint("StandardWebhook", "POST", "hooks/standard", anonymous=True, seconds=HOOK_SECONDS)
async def standard_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """Any sender of Standard Webhooks: its signature is its key (checked over the raw body before parsing)."""
    body = json_body(req, MAX_HOOK_BODY_BYTES)
    headers = {name.lower(): value for name, value in req.headers.items()}
    webhook_id = check_standard_webhook(load_settings().standard_secrets, headers, body, datetime.now(UTC))
    return await _receive(req, [parse_standard_webhook(parse_json(body, "body"), webhook_id)])


@bp.endpoint("GitHubHook", "POST", "hooks/github", anonymous=True, seconds=HOOK_SECONDS)
async def github(req: func.HttpRequest) -> func.HttpResponse:
    """GitHub's webhooks: X-Hub-Signature-256 over the raw body, checked before parsing."""
    body = json_body(req, MAX_HOOK_BODY_BYTES)
    headers = {name.lower(): value for name, value in req.headers.items()}
    check_github(load_settings().github_secrets, headers, body)
    return await _receive(req, [parse_github(parse_json(body, "body"), headers)])


@bp.function_name("CarryOutHookDelivery")
@bp.queue_trigger(arg_name="msg", queue_name=HOOK_QUEUE, connection="AzureWebJobsStorage")
async def carry_out(msg: func.QueueMessage) -> None:
    """What a hook queued. A failure raises: the queue tries again (carrying out is idempotent)."""
    context = await get_context()
    try:
        body = json.loads(msg.get_body())
    except ValueError:
        log.warning("a message on %s is not JSON, dropped", HOOK_QUEUE)
        return
    try:
        outcome = await context.hooks.carry_out(body, app_links())
    except ValueError as exc:  # pydantic's ValidationError: no message the app queued
        log.warning("a message on %s is no delivery the app queued, dropped: %s", HOOK_QUEUE, str(exc)[:200])
        return
    log.info("hook delivery (attempt %s): %s", msg.dequeue_count, outcome)
