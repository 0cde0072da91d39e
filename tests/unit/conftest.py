"""Fixtures of the unit layer: one in-process world per test (see :mod:`.harness`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .harness import World, build_world


@pytest.fixture
async def make_world() -> AsyncIterator[Callable[..., World]]:
    """Build worlds with given settings (``build_world``'s arguments); their HTTP clients are closed after."""
    built: list[World] = []

    def make(**kwargs: Any) -> World:
        built.append(build_world(**kwargs))
        return built[-1]

    yield make
    for world in built:
        await world.http.aclose()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
