"""Node answers are untrusted input: the protocol's models refuse what would poison the
scheduler (NaN, infinity, negative times, impossible frames and slot counts) and cut long
messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from farm_common.frames import MAX_FRAME_NUMBER
from farm_common.protocol import MAX_MESSAGE_CHARS, JobDetail, NodeInfo, Registered

DETAIL: dict[str, Any] = {
    "id": "j1",
    "state": "running",
    "scene": "sha256:ab",
    "format": "PNG",
    "counts": {"total": 1, "pending": 0, "rendering": 0, "done": 1, "failed": 0},
    "progress": 1.0,
    "created": 0.0,
    "version": "running/1/0",
    "frames": [{"frame": 1, "state": "done", "seconds": 0.5}],
}
INFO: dict[str, Any] = {
    "version": "0.1.0",
    "blender_version": "4.2.0",
    "slots": 2,
    "busy": 0,
    "cpu_count": 2,
    "threads": 0,
    "name": "n",
    "url": "http://n:8100",
    "jobs": {"queued": 0, "running": 0, "finished": 0},
}


def frame(**changes: Any) -> str:
    return json.dumps({**DETAIL, "frames": [{**DETAIL["frames"][0], **changes}]})


def test_a_well_formed_status_is_read() -> None:
    status = JobDetail.model_validate_json(json.dumps(DETAIL))
    assert status.frames[0].seconds == 0.5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (frame(seconds=float("nan")), "seconds"),  # json.dumps writes NaN, as a broken node may
        (frame(seconds=float("inf")), "seconds"),
        (frame(seconds=-1.0), "seconds"),
        (frame(frame="one"), "frame"),
        (frame(frame=MAX_FRAME_NUMBER + 1), "frame"),
        (frame(frame=-3), "frame"),
        (json.dumps({**DETAIL, "progress": float("nan")}), "progress"),
        (json.dumps({**DETAIL, "startup_seconds": float("-inf")}), "startup_seconds"),
        (json.dumps({**DETAIL, "counts": {**DETAIL["counts"], "done": "one"}}), "done"),
    ],
)
def test_a_status_that_would_poison_the_scheduler_is_refused(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobDetail.model_validate_json(text)
    assert field in str(caught.value)


def test_long_messages_are_cut_not_refused() -> None:
    long = "Error: " + "x" * 1_000_000
    status = JobDetail.model_validate_json(frame(state="failed", error=long, seconds=None))
    assert status.frames[0].error == long[:MAX_MESSAGE_CHARS]
    detail = JobDetail.model_validate_json(json.dumps({**DETAIL, "error": long}))
    assert detail.error is not None and len(detail.error) == MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("change", "field"),
    [({"slots": 300_000}, "slots"), ({"slots": 0}, "slots"), ({"name": "n" * 10_000}, "name")],
)
def test_a_node_cannot_claim_impossible_facts(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NodeInfo.model_validate({**INFO, **change})
    assert field in str(caught.value)


def test_a_heartbeat_interval_must_be_a_number() -> None:
    with pytest.raises(ValidationError):
        Registered.model_validate_json('{"ok": true, "heartbeat_seconds": NaN}')
