"""Run events: nothing happens without a listener; scope fields; strict JSON lines; a bad listener never breaks a run."""
from __future__ import annotations

import io
import json
import math

from deftpipe.ui import events


def test_publish_without_listener_is_a_no_op() -> None:
    assert not events.active()
    events.publish("stage_start", iter="iter1", stage="sdg")  # nothing to assert but that it returns


def test_listen_gets_ts_event_then_scope_then_fields_and_scopes_restore() -> None:
    got: list[dict] = []
    with events.listen(got.append):
        with events.scope(phase="deft"):
            with events.scope(phase="automl_phase1", command="run"):
                events.publish("trial_start", trial="trial_0000")
            events.publish("stage_start", iter="iter1", stage="sdg")
        events.publish("result", status="ok")
    assert not events.active()
    assert [list(e)[:2] for e in got] == [["ts", "event"]] * 3
    assert got[0]["phase"] == "automl_phase1" and got[0]["command"] == "run"
    assert got[1]["phase"] == "deft" and "command" not in got[1]
    assert "phase" not in got[2]
    assert got[1]["ts"].endswith("+00:00")


def test_json_lines_are_strict_json_one_per_line() -> None:
    out = io.StringIO()
    with events.listen(events.JsonLines(out)):
        events.publish("trial_end", score=math.nan, path=events, nested={"x": (1, math.inf)})
        events.publish("result", status="ok")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["score"] is None and first["nested"] == {"x": [1, None]} and isinstance(first["path"], str)
    assert json.loads(lines[1])["event"] == "result"


def test_a_failing_listener_does_not_reach_the_producer() -> None:
    got: list[dict] = []

    def broken(event: dict) -> None:
        raise RuntimeError("sink closed")

    with events.listen(broken), events.listen(got.append):
        events.publish("progress", done=1, total=2)
    assert [e["event"] for e in got] == ["progress"]
