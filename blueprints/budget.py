"""The monthly budget (ARR_BUDGET): what it is and what this month has cost so far.

    GET /api/budget   GetBudget   the amount, the month's estimated spend, its thresholds and which are crossed

It acts after each cleanup run (arr_core/services/budget.py); a start it refuses is a 409 "Budget exceeded".
"""

from __future__ import annotations

import azure.functions as func

from arr_core.api.views import BudgetThresholdView, BudgetView
from arr_core.domain.budget import crossed
from arr_core.errors import BudgetNotSet
from arr_core.services.context import get_context

from .http import Api, json_response

bp = Api()


@bp.endpoint("GetBudget", "GET", "budget")
async def get_budget(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    budget, month = context.settings.budget, await context.budget.month_spend()
    if budget is None or month is None:
        raise BudgetNotSet("no ARR_BUDGET is set: the app keeps no budget")
    hit = {t.percent for t in crossed(budget, month)}
    return json_response(BudgetView(
        amount=budget.amount, currency=context.settings.currency, time_zone=budget.time_zone,
        month=f"{month.month:%Y-%m}", spent=month.amount, percent=round(month.percent_of(budget), 1),
        unpriced_minutes=month.unpriced_minutes, refusing_starts=await context.budget.refusal() is not None,
        thresholds=[BudgetThresholdView(percent=t.percent, action=t.action.value, crossed=t.percent in hit)
                    for t in budget.thresholds]))
