import json
import logging

import pytest

from farm_common.logs import JsonFormatter, configure_logging


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "orchestrator.scheduling.scheduler", logging.WARNING, __file__, 1, msg, args, None
    )
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_the_message_and_the_job_node_frames_fields() -> None:
    line = JsonFormatter().format(
        record("job %s batch %s -> %s", "j1", "b1", "http://n1", job="j1", node="http://n1",
               frames="1-8")
    )  # fmt: skip
    entry = json.loads(line)
    assert entry["message"] == "job j1 batch b1 -> http://n1"
    assert (entry["job"], entry["node"], entry["frames"]) == ("j1", "http://n1", "1-8")
    assert entry["level"] == "warning" and entry["logger"] == "orchestrator.scheduling.scheduler"
    assert entry["ts"].endswith("Z")


def test_json_lines_have_no_record_internals() -> None:
    entry = json.loads(JsonFormatter().format(record("plain")))
    assert set(entry) == {"ts", "level", "logger", "message"}


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure_logging("info", "xml")


def test_configure_logging_routes_uvicorn_through_the_chosen_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("info", "json")
        logging.getLogger("uvicorn.error").info("Started server process")
        err = capsys.readouterr().err.strip().splitlines()
        assert json.loads(err[-1])["message"] == "Started server process"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
