"""arr-sessions: Azure Remote Rendering sessions for automation.

The table of contents: it registers the blueprints (sessions, maintenance, notifications, dashboard, hooks, the links
of stop warnings, warm pools, schedules, heartbeats, quotas) and nothing else. The list of functions is not kept here, where it went stale: every route, its answers and the
functions without HTTP (timer, queues) are in ``docs/API.md`` (section 1), and the routes in the document the app
serves at ``/api/openapi.json``. The code's layout is in ``docs/architecture.md``.
"""

import azure.functions as func

from blueprints.budget import bp as budget
from blueprints.dashboard import bp as dashboard
from blueprints.heartbeats import bp as heartbeats
from blueprints.hooks import bp as hooks
from blueprints.maintenance import bp as maintenance
from blueprints.notifications import bp as notifications
from blueprints.pools import bp as pools
from blueprints.quotas import bp as quotas
from blueprints.schedules import bp as schedules
from blueprints.sessions import bp as sessions
from blueprints.stop_links import bp as stop_links

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(sessions)
app.register_functions(maintenance)
app.register_functions(notifications)
app.register_functions(dashboard)
app.register_functions(hooks)
app.register_functions(stop_links)
app.register_functions(heartbeats)
app.register_functions(pools)
app.register_functions(budget)
app.register_functions(schedules)
app.register_functions(quotas)
