"""The hook of test_schemathesis.py's run (its config file names this file): one rule across parameters that no
check's setting can say, in the other direction from ``positive_data_acceptance``.

StartSession with ``payload=ignore`` does not read its body at all, whatever it holds (a webhook sender posts its own
payload, of its own type: docs/API.md, "Request bodies"), so a body that breaks the document's schema is not refused
then. OpenAPI 2.0 cannot make a body's schema depend on a query parameter, so ``negative_data_rejection``'s failure
for exactly that request (the body the only schema-violating part, ``payload=ignore`` in the query) is dropped; every
other schema-violating request of the operation must still be refused. tests/integration/test_http_api.py tests the
skipped body on its own.
"""

from __future__ import annotations

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData, Failure
from schemathesis.core.parameters import ParameterLocation


@schemathesis.hook
def filter_failure(context: object, failure: Failure, case: schemathesis.Case, response: object) -> bool:
    """False (drop it) for an accepted schema-violating body that StartSession was told not to read."""
    if not isinstance(failure, AcceptedNegativeData) or case.meta is None:
        return True
    negative = {location for location, component in case.meta.components.items() if component.mode.is_negative}
    skipped_body = (case.operation.definition.raw.get("operationId") == "StartSession"
                    and (case.query or {}).get("payload") == "ignore" and negative == {ParameterLocation.BODY})
    return not skipped_body
