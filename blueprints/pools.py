"""Warm pools (ARR_POOLS): what they hold, and a claim of one Ready session.

    GET  /api/pools                ListPools   every pool: open or not, Ready / starting / claimed, cost per hour
    POST /api/pools/{name}/claim   ClaimPool   one Ready session becomes the requester's (Idempotency-Key: once)

The pools are refilled, kept warm and closed after each cleanup (arr_core/services/pools.py).
"""

from __future__ import annotations

import azure.functions as func

from arr_core.api.present import build_view
from arr_core.api.views import ClaimRequest, PoolList
from arr_core.domain.pools import POOL_NAME
from arr_core.errors import PoolNotFound
from arr_core.services.context import get_context

from .http import Api, app_links, idempotency_key, json_response, read_body

bp = Api()


@bp.endpoint("ListPools", "GET", "pools")
async def list_pools(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    return json_response(PoolList(pools=await context.pools.views()))


@bp.endpoint("ClaimPool", "POST", "pools/{name}/claim")
async def claim_pool(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    if not POOL_NAME.fullmatch(name):
        raise PoolNotFound(f"no pool {name[:64]!r}", field="name")
    request = read_body(req, ClaimRequest)
    key = idempotency_key(req)
    context = await get_context()
    lease = request.lease_minutes or context.settings.default_lease_minutes or 60
    state = await context.pools.claim(name, request.requested_by, lease, key)
    return json_response(build_view(state.session_id, state.arr, state.record, app_links()))
