"""arr-sessions: Azure Remote Rendering sessions for automation.

    POST  /api/sessions               StartSession     202 + Location + Retry-After while the session starts
    GET   /api/sessions               ListSessions
    GET   /api/sessions/{id}          GetSession
    GET   /api/sessions/{id}/ready    WaitUntilReady   the monitor Logic Apps poll
    PATCH /api/sessions/{id}          ExtendSession
    POST  /api/sessions/{id}/stop     StopSession
    POST  /api/cleanup                RunCleanup       ?dryRun=true, ?mode=lease|nightly
    GET   /api/history                ListHistory      from Table Storage, paged
    GET   /api/usage                  GetUsage         billed minutes and estimated cost
    timer lease_cleanup                                %ARR_CLEANUP_SCHEDULE% (default every 5 minutes)
    POST  /api/subscriptions          SubscribeSessionChanges  webhook trigger: 201 + Location; DELETE it to end
    queue arr-watch                   WatchSession     looks at a starting session again until it is Ready
    queue arr-notify                  DeliverNotification  one delivery attempt; backoff by delayed retries
    GET   /api/health                 Health           anonymous
    GET   /api/openapi.json           OpenApi          anonymous; OpenAPI 2.0 for custom connectors

Everything else lives in ``arr_core`` (ARR, history, policy) and ``blueprints`` (HTTP shapes).
"""

import azure.functions as func

from blueprints.dashboard import bp as dashboard
from blueprints.maintenance import bp as maintenance
from blueprints.notifications import bp as notifications
from blueprints.sessions import bp as sessions

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(sessions)
app.register_functions(maintenance)
app.register_functions(notifications)
app.register_functions(dashboard)
