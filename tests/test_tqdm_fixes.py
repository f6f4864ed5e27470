"""training/tqdm_fixes.py: a bar interrupted while it is being made, collected afterwards."""
from __future__ import annotations

import gc
import io
import sys

import pytest
from tqdm import tqdm

from training.tqdm_fixes import Bar


def errors_after_an_interrupted_bar(cls: type, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make a `cls` bar with a KeyboardInterrupt where tqdm takes the bar's position (as a Ctrl-C
    would land there), collect it, and return what its collection raised."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(f"{type(u.exc_value).__name__}: {u.exc_value}"))
    monkeypatch.setattr(tqdm, "_get_free_pos", classmethod(interrupted))
    try:
        cls(total=10, file=io.StringIO())
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the bar was made without the interruption")
    gc.collect()
    return seen


def test_plain_tqdm_raises_when_the_half_made_bar_is_collected(monkeypatch):
    """The upstream bug; when this fails, tqdm handles it and training/tqdm_fixes.py can go."""
    assert any("no attribute 'pos'" in e for e in errors_after_an_interrupted_bar(tqdm, monkeypatch))


def test_bar_leaves_a_half_made_bar_alone(monkeypatch):
    assert errors_after_an_interrupted_bar(Bar, monkeypatch) == []


def test_bar_is_still_a_progress_bar():
    out = io.StringIO()
    with Bar(total=3, file=out, desc="epoch", mininterval=0) as bar:
        bar.update(3)
    assert "epoch" in out.getvalue() and "3/3" in out.getvalue()
