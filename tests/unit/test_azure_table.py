"""The Azure adapter's reading of the SDK's errors, by error code and status (never by the message), and its
OData. Its behaviour against the real service is tests/integration/test_table_port.py (Azurite)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from arr_core.store.azure_table import AzureTable, odata
from arr_core.store.table import EntityChanged, EntityExists, EntityMissing, Query, TableMissing, TableRefusal


class Answer:
    """What azure-core's errors read of an HTTP answer: its status, headers and body."""

    def __init__(self, status: int, code: str) -> None:
        self.status_code = status
        self.headers = {"x-ms-error-code": code}
        self.reason = "answer"
        self.request = None

    def text(self) -> str:
        return ""


class Client:
    """An SDK client whose every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            raise self.error
        return call


def error(cls: type[HttpResponseError], status: int, code: str) -> HttpResponseError:
    return cls(message=code, response=Answer(status, code))  # type: ignore[arg-type]


async def test_a_table_being_deleted_cannot_be_created_yet_and_is_not_taken_for_one_that_exists() -> None:
    """Azure answers 409 TableBeingDeleted for 40 s or more after a delete: the table is not there."""
    with pytest.raises(TableRefusal) as refused:
        await AzureTable(Client(error(ResourceExistsError, 409, "TableBeingDeleted"))).create_table()  # type: ignore[arg-type]
    assert type(refused.value) is TableRefusal and refused.value.code == "TableBeingDeleted"
    assert await AzureTable(Client(error(ResourceExistsError, 409, "TableAlreadyExists"))).create_table() is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("cls", "status", "code", "expected"), [
    (ResourceNotFoundError, 404, "TableNotFound", TableMissing),
    (ResourceNotFoundError, 404, "ResourceNotFound", EntityMissing),
    (ResourceExistsError, 409, "EntityAlreadyExists", EntityExists),
    (HttpResponseError, 412, "UpdateConditionNotSatisfied", EntityChanged),
    (HttpResponseError, 400, "PropertyValueTooLarge", TableRefusal),
    (HttpResponseError, 503, "ServerBusy", TableRefusal),
])
async def test_the_sdks_errors_become_the_ports_by_code_and_status(cls: type[HttpResponseError], status: int,
                                                                   code: str, expected: type[Exception]) -> None:
    with pytest.raises(TableRefusal) as refused:
        await AzureTable(Client(error(cls, status, code))).insert({"PartitionKey": "p", "RowKey": "r"})  # type: ignore[arg-type]
    assert type(refused.value) is expected
    assert (refused.value.status, refused.value.code) == (status, code)


def test_a_query_becomes_a_filter_with_its_values_as_parameters() -> None:
    text, parameters = odata(Query("s-202603", "a'", "b", low_inclusive=False, equal={"Kind": "session"},
                                   one_of={"Status": ("Ready", "Stopped")}))
    assert text == ("PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi and Kind eq @eq0 and "
                    "( Status eq @in0_0 or Status eq @in0_1 )")
    assert parameters == {"pk": "s-202603", "lo": "a'", "hi": "b", "eq0": "session", "in0_0": "Ready",
                          "in0_1": "Stopped"}
