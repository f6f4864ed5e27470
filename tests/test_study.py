"""make study (training/study.py): the grid of batch sizes and seeds, its table and its choice."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from training.report import STUDY
from training.study import run_dir, summarise

REPO = Path(__file__).resolve().parents[1]


def test_the_choice_is_the_batch_closest_to_the_study_on_train_and_validation_only():
    st, sv = STUDY["baseline"]
    runs = []
    for seed, jitter in enumerate((-0.002, 0.0, 0.002)):
        # batch 32: 0.5 point under the study on train and validation, 5 points under it on test
        runs.append({"model": "baseline", "batch_size": 32, "seed": seed, "train_acc": (st - 0.5) / 100 + jitter,
                     "val_acc": (sv - 0.5) / 100 + jitter, "test_acc": 0.5})
        # batch 64: 2 points under on train and validation, but the best test (never looked at)
        runs.append({"model": "baseline", "batch_size": 64, "seed": seed, "train_acc": (st - 2) / 100 + jitter,
                     "val_acc": (sv - 2) / 100 + jitter, "test_acc": 0.99})
    s = summarise(runs)
    assert s["chosen_batch_size"] == 32
    assert abs(s["mean_distance"][32] - 0.5) < 1e-9 and abs(s["mean_distance"][64] - 2.0) < 1e-9
    row = next(r for r in s["rows"] if r["batch_size"] == 32)
    assert row["seeds"] == [0, 1, 2] and abs(row["val_sd"] - 0.2) < 1e-9 and abs(row["val_diff"] + 0.5) < 1e-9


def test_the_grid_trains_every_cell_reuses_finished_runs_and_writes_the_table(tmp_path, fmnist_dir):
    cmd = [sys.executable, "-m", "training.study", "--models", "baseline", "dropout", "--seeds", "2",
           "--batch-sizes", "32", "64", "--epochs", "1", "--data-dir", str(fmnist_dir),
           "--artifacts", str(tmp_path), "--jobs", "2"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    summary = json.loads((tmp_path / "reports" / "study.json").read_text())
    assert {(r["model"], r["batch_size"]) for r in summary["rows"]} == {
        (m, b) for m in ("baseline", "dropout") for b in (32, 64)}
    assert all(r["seeds"] == [0, 1] for r in summary["rows"]) and summary["chosen_batch_size"] in (32, 64)
    assert len(summary["runs"]) == 8 and summary["mode"] == "native"
    assert f"Chosen: batch {summary['chosen_batch_size']}" in (tmp_path / "reports" / "study.md").read_text()
    ckpt = run_dir(tmp_path, 64, 1) / "checkpoints" / "dropout.pt"
    before = ckpt.stat().st_mtime_ns
    again = subprocess.run([*cmd[:-1], "1"], cwd=REPO, capture_output=True, text=True, timeout=600)  # --jobs 1
    assert again.returncode == 0, again.stderr
    assert ckpt.stat().st_mtime_ns == before  # reused, not retrained
    assert json.loads((tmp_path / "reports" / "study.json").read_text())["rows"] == summary["rows"]


def test_an_unknown_variant_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "training.study", "--models", "kaggle", "--artifacts", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Unknown study variant 'kaggle'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
