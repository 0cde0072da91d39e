"""Quotas of Ready-minutes per period (issue 22): their CRUD and top-ups over HTTP.

    POST   /api/quotas               CreateQuota   201 + Location, QuotaView
    GET    /api/quotas               ListQuotas    QuotaList: each with its current period's used, committed, left
    DELETE /api/quotas/{id}          DeleteQuota   QuotaView as it was
    POST   /api/quotas/{id}/top-up   TopUpQuota    QuotaView with the top-up counted

What they refuse is :class:`~arr_core.errors.QuotaExceeded` (409 "Quota exceeded") from StartSession and
ExtendSession; the cleanup stops the running sessions of a scope whose quota is reached.
"""

from __future__ import annotations

import azure.functions as func

from arr_core.api.quotas import QuotaList, QuotaRequest, TopUpRequest
from arr_core.services.context import get_context

from .http import Api, absolute_url, json_response, read_body

bp = Api()


@bp.endpoint("CreateQuota", "POST", "quotas")
async def create_quota(req: func.HttpRequest) -> func.HttpResponse:
    request = read_body(req, QuotaRequest)
    context = await get_context()
    quota = await context.quotas.add(request)
    (view,) = await context.quotas.views([quota])
    return json_response(view, 201, headers={"Location": absolute_url(f"quotas/{quota.id}")})


@bp.endpoint("ListQuotas", "GET", "quotas")
async def list_quotas(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    return json_response(QuotaList(quotas=await context.quotas.views()))


@bp.endpoint("DeleteQuota", "DELETE", "quotas/{id}")
async def delete_quota(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    removed = await context.quotas.remove(req.route_params.get("id", ""))
    (view,) = await context.quotas.views([removed])
    return json_response(view)


@bp.endpoint("TopUpQuota", "POST", "quotas/{id}/top-up")
async def top_up_quota(req: func.HttpRequest) -> func.HttpResponse:
    quota_id = req.route_params.get("id", "")
    request = read_body(req, TopUpRequest)
    context = await get_context()
    quota = await context.quotas.top_up(quota_id, request)
    (view,) = await context.quotas.views([quota])
    return json_response(view)
