"""Prove the shipped weights are what this code trains: `python -m release.verify_weights`
(`make verify-weights`).

Retrains every registry model with its full recipe into a temporary directory (`python -m
training.train`, two at a time as `make train-all` trains them; not the train+validation retrain
or the reports, which ship nothing), assembles the ensemble from them (`python -m
training.ensemble`), exports them without the model store, builds the files `make
publish-weights` would ship from them, and compares every sha256 (each state_dict and ONNX file) and
every accuracy with weights/manifest.json. Prints the exact list of what differs and exits 1 if
anything does. Takes about as long as `make train-all export` (minutes); not part of `make test`.
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

from .publish import REPO, collect, dirty_code, source_commit


def differences(shipped: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    """Every shipped file whose sha256 differs from the rebuilt one, every differing accuracy,
    and every model present in only one of the two."""
    out = []
    a, b = shipped.get("models", {}), rebuilt.get("models", {})
    out += [f"{n}: shipped, but not rebuilt" for n in a if n not in b]
    out += [f"{n}: rebuilt, but not shipped" for n in b if n not in a]
    for name in (n for n in a if n in b):
        for file_key, sha_key in (("state_dict", "state_dict_sha256"), ("onnx", "sha256")):
            if a[name][sha_key] != b[name][sha_key]:
                out.append(f"{name}: {a[name][file_key]} sha256 {a[name][sha_key][:16]}... shipped, "
                           f"{b[name][sha_key][:16]}... rebuilt")
        for key, value in a[name]["metrics"].items():
            if b[name]["metrics"].get(key) != value:
                out.append(f"{name}: {key} {value} shipped, {b[name]['metrics'].get(key)} rebuilt")
    return out


def rebuild(workdir: Path, data_dir: str, kaggle_dir: str, jobs: int) -> dict[str, Any]:
    """Every registry model trained with its full recipe into `workdir` (`python -m training.train`,
    `jobs` at a time, one thread each, most multiply-accumulates first, as `make train-all` trains
    them), the assembled models built from them, exported without the store; the manifest
    publishing it would write."""
    names = sorted(trainable_models(), key=lambda n: -describe(n)["macs"])

    def train(name: str) -> tuple[str, int]:
        cmd = [sys.executable, "-m", "training.train", "--model", name, "--artifacts", str(workdir),
               "--data-dir", data_dir, "--kaggle-dir", kaggle_dir]
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


@cli
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
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fashion-zoo-verify-"))
    try:
        rebuilt = rebuild(workdir, args.data_dir, args.kaggle_dir, args.jobs)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    diffs = differences(shipped, rebuilt)
    files = 2 * len(shipped["models"])
    if diffs:
        print(f"{len(diffs)} difference(s) between weights/ (commit "
              f"{str(shipped.get('source_commit'))[:12]}) and a retrain of this checkout ({checkout}):",
              file=sys.stderr)
        for line in diffs:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    print(f"weights/ verified: all {files} files ({len(shipped['models'])} state_dicts, "
          f"{len(shipped['models'])} ONNX files) and every accuracy equal, bit for bit, to a "
          f"fresh retrain and export of this checkout ({checkout})", file=sys.stderr)


if __name__ == "__main__":
    main()
