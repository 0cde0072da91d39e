"""Functions that tell people what happened: trigger subscriptions, the status watcher and delivery.

``POST /api/subscriptions`` is the Power Platform webhook trigger (``x-ms-trigger``): the platform gives its
callback URL and later ``DELETE``\\ s the ``Location`` it was answered with. The two queue functions do the work
that must not wait on anyone: ``arr-watch`` looks at a starting session again; ``arr-notify`` makes one delivery
attempt. A message whose function keeps failing goes to ``<queue>-poison`` after the host's five attempts.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from arr_core.api.views import SubscriptionRequest, SubscriptionView, WarningSubscriptionRequest
from arr_core.domain.notifications import NOTIFY_QUEUE, SUBSCRIPTION_ID, WATCH_QUEUE, Subscription
from arr_core.errors import SubscriptionNotFound
from arr_core.services.context import get_context

from .http import Api, absolute_url, app_links, json_response, read_body

bp = Api()
log = logging.getLogger("arr_sessions.notifications")


def subscription_id(req: func.HttpRequest) -> str:
    value = req.route_params.get("id", "")
    if not SUBSCRIPTION_ID.fullmatch(value):
        raise SubscriptionNotFound(f"no subscription {value[:64]!r}", field="id")
    return value


@bp.endpoint("SubscribeSessionChanges", "POST", "subscriptions")
async def subscribe(req: func.HttpRequest) -> func.HttpResponse:
    request = read_body(req, SubscriptionRequest)
    context = await get_context()
    subscription = await context.notifier.subscribe(request)
    location = absolute_url(f"subscriptions/{subscription.id}")
    return json_response(_view(subscription), 201, headers={"Location": location})


@bp.endpoint("SubscribeStopWarnings", "POST", "warnings/subscriptions")
async def subscribe_stop_warnings(req: func.HttpRequest) -> func.HttpResponse:
    """The trigger of stop warnings: its own operation, so a flow gets the warning's own schema (a flow made for
    status changes never receives one). Removed, as any subscription, by DELETE of its Location."""
    request = read_body(req, WarningSubscriptionRequest)
    context = await get_context()
    subscription = await context.notifier.subscribe(request)
    location = absolute_url(f"subscriptions/{subscription.id}")
    return json_response(_view(subscription), 201, headers={"Location": location})


@bp.endpoint("Unsubscribe", "DELETE", "subscriptions/{id}")
async def unsubscribe(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    return json_response(_view(await context.notifier.unsubscribe(subscription_id(req))))


def _view(subscription: Subscription) -> SubscriptionView:
    return SubscriptionView(id=subscription.id, statuses=sorted(subscription.statuses or ()) or None,
                            session_id=subscription.session_id, requested_by=subscription.requested_by,
                            events=sorted(subscription.events), created_at=subscription.created_at)


def _message(msg: func.QueueMessage) -> dict[str, Any]:
    body = json.loads(msg.get_body())
    if not isinstance(body, dict):
        msg = "a queue message must be a JSON object"
        raise TypeError(msg)
    return body


@bp.function_name("WatchSession")
@bp.queue_trigger(arg_name="msg", queue_name=WATCH_QUEUE, connection="AzureWebJobsStorage")
async def watch_session(msg: func.QueueMessage) -> None:
    context = await get_context()
    await context.notifier.watch(str(_message(msg)["sessionId"]), app_links())


@bp.function_name("DeliverNotification")
@bp.queue_trigger(arg_name="msg", queue_name=NOTIFY_QUEUE, connection="AzureWebJobsStorage")
async def deliver_notification(msg: func.QueueMessage) -> None:
    context = await get_context()
    outcome = await context.notifier.deliver(_message(msg))
    log.info("notification delivery (attempt %s): %s", msg.dequeue_count, outcome)
