"""StepProgress: stage, percent and time left, as plain lines when the output is not a terminal."""

import io
import time

import pytest
from rich.console import Console

from coldrec.progress import StepProgress


def test_plain_lines_name_the_step_percent_and_time_left():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with StepProgress([("load", 0.05), ("fit", 0.2), ("save", 0.05)], console, title="build", heartbeat_s=0.05) as p:
        p.step("load")
        time.sleep(0.06)
        p.step("fit", detail="point 1")
        assert 0.15 < p.fraction() < 0.35
        time.sleep(0.12)
        assert p.seconds_left() is not None and 0 < p.seconds_left() < 1
        p.step("save")
        assert p.fraction() >= 0.8
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("build: step 1/3 load - 0%")
    assert any("step 2/3 fit (point 1)" in line and "left" in line for line in lines)
    assert len([line for line in lines if "step 2/3" in line]) >= 2  # heartbeats within the long step
    assert lines[-1].startswith("build: done in")


def test_a_tiny_first_step_does_not_wreck_the_estimate():
    console = Console(file=io.StringIO(), force_terminal=False)
    with StepProgress([("cached", 0.001), ("work", 10.0)], console) as p:
        p.step("cached")
        time.sleep(0.05)  # 50x its expected cost
        p.step("work")
        assert p.seconds_left() == pytest.approx(10.0, rel=0.05)  # the reference speed, not 50x


def test_unknown_step_and_empty_job():
    with pytest.raises(ValueError):
        StepProgress([], Console(file=io.StringIO()))
    with StepProgress([("a", 1)], Console(file=io.StringIO())) as p, pytest.raises(ValueError):
        p.step("b")
