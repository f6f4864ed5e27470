"""Prove the shipped weights are what this code trains: `python -m release.verify_weights`
(`make verify-weights`; docs/export.md says what it checks and what it took).

Retrains every registry model with its full recipe, in the mode the weights were made in, into a
temporary directory (two at a time, as `make train-all`), assembles the ensemble, exports, builds
what `make publish-weights` would ship and compares it with weights/manifest.json, one line per
model: bit for bit where the mode guarantees it, else every accuracy within its seed spread.
Exits 1 if any model fails.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.pretrained import shipped_manifest, weights_dir
from zoo.registry import describe, trainable_models

from training.portable import describe_processor, mode_name, processor

from .publish import REPO, collect, dirty_code, source_commit


def differences(shipped: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    """What differs between a shipped manifest entry and its rebuild: each file's sha256, each accuracy."""
    files = [f"{shipped[file_key]} sha256 {shipped[sha_key][:16]}... shipped, {rebuilt[sha_key][:16]}... rebuilt"
             for file_key, sha_key in (("state_dict", "state_dict_sha256"), ("onnx", "sha256"))
             if shipped[sha_key] != rebuilt[sha_key]]
    return files + [f"{key} {value} shipped, {rebuilt['metrics'].get(key)} rebuilt"
                    for key, value in shipped["metrics"].items() if rebuilt["metrics"].get(key) != value]


# Where the study grid measured no seed spread (the Kaggle models, the ensemble): the tolerance, in
# points, of an accuracy retrained on another processor.
DEFAULT_TOLERANCE = 0.5
# Two runs that differ only in rounding are two draws of the seed distribution: their difference has
# sd sqrt(2) x the seeds' sd, so 4 sds is ~2.8 sds of the difference (a false alarm ~0.5% per figure).
SPREADS = 4  # an accuracy retrained elsewhere is within 4 seed standard deviations of the shipped one
FLOOR = 0.2  # ... or this many points, for a spread measured as (almost) nothing


def bit_for_bit(entry: dict[str, Any], here: dict[str, Any]) -> tuple[bool, str]:
    """Whether a retrain on this processor (`here`, `training.portable.processor()`) must give the
    shipped bits, and a phrase saying why (or why not)."""
    made = entry.get("trained_on") or {}
    mode, proc = made.get("mode"), made.get("processor") or {}
    where = (f"the {mode} mode" if mode else "an unrecorded mode") + \
        f" on {describe_processor(proc) if proc else 'an unrecorded processor'}"
    if mode == "portable" and proc.get("machine") == here["machine"] == "x86_64":
        return True, f"made in {where}; the portable mode gives the same bits on every x86-64 processor"
    if mode == "native" and proc == here:
        return True, f"made in {where}: this very kind of processor"
    return False, f"made in {where}; retrained on {describe_processor(here)}"


def tolerance(entry: dict[str, Any], key: str) -> tuple[float, str]:
    """(points, where it comes from) for accuracy `key` of a shipped entry."""
    sd = (entry.get("seed_spread") or {}).get(key)
    if sd is None:
        return DEFAULT_TOLERANCE, "no seed spread measured"
    return max(SPREADS * 100 * sd, FLOOR), f"{SPREADS} x the seed sd {100 * sd:.2f}"


def verdicts(shipped: dict[str, Any], rebuilt: dict[str, Any], here: dict[str, Any]) -> list[tuple[bool, str]]:
    """One (passed, line) per shipped model: bit for bit where the training mode guarantees it,
    else every accuracy within its seed spread, the line saying which and why."""
    out = []
    a, b = shipped.get("models", {}), rebuilt.get("models", {})
    for name, entry in a.items():
        if name not in b:
            out.append((False, f"[{name}] FAILED: shipped, but not rebuilt"))
            continue
        exact, why = bit_for_bit(entry, here)
        if entry.get("members"):  # assembled: bit for bit exactly when every member is
            exact = all(bit_for_bit(a[m], here)[0] for m in entry["members"] if m in a)
            why = f"assembled from {', '.join(entry['members'])}, " + \
                ("each bit for bit here" if exact else "not all of them bit for bit here")
        if exact:
            diffs = differences(entry, b[name])
            out.append((not diffs, f"[{name}] " + (f"bit for bit: both files and every accuracy equal ({why})"
                                                 if not diffs else f"FAILED bit for bit ({why}): {'; '.join(diffs)}")))
            continue
        checks, ok = [], True
        for key, value in entry["metrics"].items():
            if value is None or b[name]["metrics"].get(key) is None:
                continue
            tol, source = tolerance(entry, key)
            diff = 100 * (b[name]["metrics"][key] - value)
            ok &= abs(diff) <= tol
            checks.append(f"{key[:-4]} {100 * value:.2f} -> {100 * b[name]['metrics'][key]:.2f} "
                          f"({diff:+.2f}, {'within' if abs(diff) <= tol else 'OUTSIDE'} {tol:.2f}: {source})")
        out.append((ok, f"[{name}] {'accuracies within the seed spread' if ok else 'FAILED'}, not bit for bit "
                        f"({why}): {'; '.join(checks)}"))
    out += [(False, f"[{n}] FAILED: rebuilt, but not shipped") for n in b if n not in a]
    return out


def rebuild(workdir: Path, data_dir: str, kaggle_dir: str, jobs: int, portable_mode: bool = True) -> dict[str, Any]:
    """The manifest publishing would write from every registry model trained with its full recipe in
    `workdir` (`jobs` at a time, as `make train-all`), assembled and exported without the store."""
    names = sorted(trainable_models(), key=lambda n: -describe(n)["macs"])

    def train(name: str) -> tuple[str, int]:
        cmd = [sys.executable, "-m", "training.train", "--model", name, "--artifacts", str(workdir),
               "--data-dir", data_dir, "--kaggle-dir", kaggle_dir, "--portable", str(int(portable_mode))]
        with open(workdir / f"{name}.log", "w") as log:
            code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"[{name}] {'trained' if code == 0 else f'FAILED (see {workdir / name}.log)'}", file=sys.stderr)
        return name, code

    workdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as pool:
        failed = [n for n, code in pool.map(train, names) if code != 0]
    if failed:
        raise ZooError(f"training failed for {', '.join(failed)} (logs in {workdir}); nothing compared")
    cmd = [sys.executable, "-m", "training.ensemble", "--artifacts", str(workdir), "--data-dir", data_dir]
    with open(workdir / "ensemble.log", "w") as log:
        if subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            raise ZooError(f"`python -m training.ensemble` failed (see {workdir / 'ensemble.log'}); nothing compared")
    cmd = [sys.executable, "-m", "export", "--artifacts", str(workdir)]
    if subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        raise ZooError(f"`python -m export --artifacts {workdir}` failed; nothing compared")
    manifest, _ = collect(workdir, strict=False)
    return manifest


@cli(interrupted="nothing compared; with --workdir DIR, the same command again resumes its training")
def main() -> None:
    parser = ArgumentParser(prog="python -m release.verify_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--kaggle-dir", default="data/kaggle")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--workdir", default=None, help="train here (kept) instead of a temporary directory")
    args = parser.parse_args()
    shipped = shipped_manifest()
    if not shipped["models"]:
        raise ZooError(f"nothing shipped in {weights_dir()}; run `make train-all export publish-weights`")
    # What is trained is the checkout as it is now: its commit and any uncommitted training code.
    dirty = dirty_code()
    checkout = f"commit {source_commit()[:12]}" + (f" plus uncommitted {', '.join(dirty)}" if dirty else "")
    # Retrain in the mode the shipped weights were made in (the portable mode, unless they predate it).
    modes = {(e.get("trained_on") or {}).get("mode") for e in shipped["models"].values() if not e.get("members")}
    portable_mode = modes != {"native"}
    here = processor()
    print(f"retraining {len(shipped['models'])} models of weights/ in the {mode_name(portable_mode)} mode on "
          f"{describe_processor(here)} ({checkout}); this takes about as long as `make train-all PORTABLE=1`",
          file=sys.stderr)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fashion-zoo-verify-"))
    try:
        rebuilt = rebuild(workdir, args.data_dir, args.kaggle_dir, args.jobs, portable_mode)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results = verdicts(shipped, rebuilt, here)
    for ok, line in results:
        print(line, file=sys.stderr)
    failed = [line for ok, line in results if not ok]
    exact = sum(1 for ok, line in results if ok and " bit for bit: " in line)
    if failed:
        print(f"weights/ NOT verified: {len(failed)} of {len(results)} model(s) failed (weights/ from commit "
              f"{str(shipped.get('source_commit'))[:12]}, retrained from {checkout})", file=sys.stderr)
        sys.exit(1)
    print(f"weights/ verified against {checkout}: {exact} of {len(results)} models bit for bit"
          + (f", {len(results) - exact} within their seed spread (see above why not bit for bit)"
             if exact < len(results) else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
