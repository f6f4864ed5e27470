"""Serve the shipped weights when there is nothing else: `python -m release.shipped` (`make serve`
runs it before `bentoml serve`).

With no `fashion-zoo` in the BentoML model store (a fresh clone), or only an import of other shipped
weights, this imports weights/ (sha256 checked) as a version labelled `source=shipped`, so `make
serve` classifies without training; your own `make export` is a newer version and wins. When the
shipped version is served it says so in one line. Torch-free, like the service.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from zoo.cli import cli
from zoo.errors import ZooError
from zoo.manifest import MANIFEST, STORE_NAME, ZooLoadError, read_json, read_verified
from zoo.pretrained import RESTORE, shipped_manifest, weights_dir


def import_shipped(root: str | os.PathLike | None = None):
    """Save the shipped zoo as a new `fashion-zoo` version; returns the bentoml.Model."""
    from .store import create_version

    root = Path(root or weights_dir())
    if not (root / MANIFEST).exists():
        raise ZooError(f"no {STORE_NAME} in the BentoML model store and no shipped weights in {root}; "
                       f"run `make train-all export` first")
    manifest, onnx = read_verified(root, "shipped weights", RESTORE)
    return create_version(manifest, onnx, source="shipped")  # the bytes verified are the bytes stored


def ensure_store(root: str | os.PathLike | None = None) -> tuple[object, bool]:
    """(the `fashion-zoo` version `make serve` will serve, whether it was imported just now).

    Imports the shipped zoo when the store has none, and again when the latest version is an
    earlier import of other shipped weights (a `git pull` brought new ones); never over an export."""
    import bentoml

    try:
        latest = bentoml.models.get(f"{STORE_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return import_shipped(root), True
    if latest.info.labels.get("source") == "shipped":
        shipped = shipped_manifest(root)["models"]
        try:
            stored = read_json(latest.path, str(latest.tag))["models"]
        except ZooLoadError:
            stored = None
        if shipped and stored != shipped:
            return import_shipped(root), True
    return latest, False


def shipped_line(model, imported: bool = False) -> str | None:
    """The log line for a store version imported from the shipped weights (None for any other)."""
    info = model.info
    if info.labels.get("source") != "shipped":
        return None
    meta = info.metadata
    commit = str(meta.get("source_commit") or "unknown")[:12]
    how = ", imported into the model store just now" if imported else ""
    return (f"serving the shipped weights ({model.tag}{how}: {len(meta.get('models', []))} models published "
            f"{meta.get('published')} from commit {commit}); to serve your own, "
            f"`make train-all export` then `make serve` again")


@cli
def main() -> None:
    if os.environ.get("FASHION_ZOO_MODEL"):  # the user named the version to serve
        return
    model, imported = ensure_store()
    line = shipped_line(model, imported)
    if line:
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
