"""Client heartbeats, for the idle stop (ARR_IDLE_AFTER_READY_MINUTES, ARR_IDLE_MINUTES):

    POST /api/sessions/{id}/heartbeat   SendHeartbeat   a client is connected; answered from memory within a minute

A heartbeat is recorded at most once a minute per session and process (arr_core/services/heartbeats.py); the
cleanup warns, then stops, a Ready session whose heartbeats stopped (arr_core/domain/idle.py).
"""

from __future__ import annotations

import azure.functions as func

from arr_core.api.views import HeartbeatRequest, HeartbeatView
from arr_core.services.context import get_context

from .http import Api, json_response, read_body, session_id_of

bp = Api()


@bp.endpoint("SendHeartbeat", "POST", "sessions/{id}/heartbeat")
async def send_heartbeat(req: func.HttpRequest) -> func.HttpResponse:
    session_id = session_id_of(req)
    request = read_body(req, HeartbeatRequest)
    context = await get_context()
    beat = await context.heartbeats.beat(session_id, request.client)
    return json_response(HeartbeatView(session_id=beat.session_id, at=beat.at, recorded_at=beat.recorded_at,
                                       next_heartbeat_at=beat.next_at, idle_stop_at=beat.idle_stop_at))
