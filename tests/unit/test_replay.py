"""The client against recorded real ARR/STS traffic and the spec's own examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replay_harness import replay

RECORDINGS = Path(__file__).parent.parent / "recordings"


def recordings() -> list[Path]:
    found = sorted(RECORDINGS.rglob("*.json"))
    extra = os.environ.get("ARR_EXTRA_RECORDINGS")
    if extra:
        found += sorted(Path(extra).glob("*.json"))
    return found


@pytest.mark.parametrize("path", recordings(), ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_recording_replays(path: Path) -> None:
    """Every recorded request is sent as recorded and every recorded answer comes back as recorded."""
    result = await replay(path)
    assert result.operations >= 1
    assert result.entries >= result.operations


def test_recordings_present() -> None:
    """The real recordings and the spec examples are both in the replay set."""
    names = {p.parent.name for p in recordings()}
    assert {"python", "spec"} <= names
    assert len(recordings()) >= 18


def _tampered(tmp_path: Path, change) -> Path:
    import json

    source = RECORDINGS / "python" / "test_client.pyTestRemoteRenderingClienttest_simple_session.json"
    data = json.loads(source.read_text())
    change(data["Entries"])
    target = tmp_path / "tampered.json"
    target.write_text(json.dumps(data))
    return target


@pytest.mark.parametrize("change", [
    pytest.param(lambda e: e[7].update(RequestUri=e[7]["RequestUri"].replace("/:stop", "/stop")), id="stop-path"),
    pytest.param(lambda e: e[5]["ResponseBody"].update(size="Tiny"), id="unreadable-size"),
    pytest.param(lambda e: e.insert(2, dict(e[0])), id="extra-sts-call"),
    pytest.param(lambda e: e[3].update(RequestUri=e[3]["RequestUri"].replace("2021-01-01", "2021-01-01-preview")),
                 id="api-version"),
])
async def test_replay_catches_differences(tmp_path: Path, change) -> None:
    """The harness is not a rubber stamp: a recording the client does not match fails."""
    with pytest.raises(AssertionError):
        await replay(_tampered(tmp_path, change))
