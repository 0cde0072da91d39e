"""arr-sessions: Azure Remote Rendering sessions for automation.

The table of contents: it registers the six blueprints (sessions, maintenance, notifications, dashboard, hooks, and
the links of stop warnings) and nothing else. The list of functions is not kept here, where it went stale: every route, its answers and the
functions without HTTP (timer, queues) are in ``docs/API.md`` (section 1), and the routes in the document the app
serves at ``/api/openapi.json``. The code's layout is in ``docs/architecture.md``.
"""

import azure.functions as func

from blueprints.dashboard import bp as dashboard
from blueprints.hooks import bp as hooks
from blueprints.maintenance import bp as maintenance
from blueprints.notifications import bp as notifications
from blueprints.sessions import bp as sessions
from blueprints.stop_links import bp as stop_links

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(sessions)
app.register_functions(maintenance)
app.register_functions(notifications)
app.register_functions(dashboard)
app.register_functions(hooks)
app.register_functions(stop_links)
