"""The History contract against the real store: the cases MemoryHistory is held to, run on HistoryStore over
Azurite, so the fake that the unit layer trusts is proven to behave like the table."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator

import pytest

from arr_core.store.history import HistoryStore
from conftest import Azurite
from unit import test_memory_history as contract
from unit.harness import START, Clock

_FAKE_ONLY = inspect.getsource(contract).split("# == MemoryHistory only", 1)[0].count("\n")
for _name, _case in vars(contract).items():
    if _name.startswith("test_") and inspect.getsourcelines(_case)[1] < _FAKE_ONLY:
        globals()[_name] = _case  # collected here too, with this module's fixtures


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def history(azurite: Azurite, clock: Clock) -> AsyncIterator[HistoryStore]:
    """A store on a fresh table, on the test's clock."""
    from azure.data.tables.aio import TableClient

    from arr_core.store.history import CLIENT_OPTIONS

    table = TableClient.from_connection_string(azurite.connection_string, table_name=f"c{uuid.uuid4().hex[:12]}",
                                               **CLIENT_OPTIONS)
    store = HistoryStore(table, clock=clock)
    yield store
    await store.aclose()
