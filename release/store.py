"""The exported zoo as one versioned model, `fashion-zoo`, in the BentoML model store.

    python -m release.store --artifacts artifacts    # after `python -m export`; `make export` runs both

`save_to_store` puts an export there (the manifest and every ONNX file it names, each checked
against its sha256 first); `release.shipped` imports the shipped weights/ when the store has none.
Both make the version with `create_version`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from zoo.cli import ArgumentParser, cli
from zoo.manifest import MANIFEST, PROJECT, STORE_NAME, ZooLoadError, manifest_text, read_json, read_verified

EXPORT_FIRST = "run `make export` (or `python -m export`) first"


def create_version(manifest: dict[str, Any], onnx: dict[str, bytes], **labels: str):
    """A new version (a bentoml.Model) of `fashion-zoo` holding `onnx` (model name -> bytes, under
    its manifest's file name) and `manifest`, with `labels` added to its own (source="shipped")."""
    import bentoml

    labels = {"project": PROJECT, "format": str(manifest["format"]), **labels}
    meta = {"models": sorted(manifest["models"]), "default": manifest["default"], "opset": manifest.get("opset")}
    if "published" in manifest:  # the shipped weights: when and from which commit
        meta.update(published=manifest.get("published"), source_commit=manifest.get("source_commit"))
    with bentoml.models.create(STORE_NAME, labels=labels, metadata=meta) as ref:
        for name, data in onnx.items():  # the bytes given are the bytes stored
            (Path(ref.path) / manifest["models"][name]["onnx"]).write_bytes(data)
        (Path(ref.path) / MANIFEST).write_text(manifest_text(manifest))
    return ref


def save_to_store(artifacts: str | os.PathLike) -> tuple[str, bool]:
    """Save the export in `artifacts` (manifest.json and the onnx/ files it names, verified) as a
    new version of `fashion-zoo`; returns (tag, created). An identical latest version is reused."""
    import bentoml

    artifacts = Path(artifacts)
    tag = str(artifacts / MANIFEST)
    manifest, onnx = read_verified(artifacts, tag, EXPORT_FIRST, files=artifacts / "onnx")
    try:
        latest = bentoml.models.get(f"{STORE_NAME}:latest")
        if read_json(latest.path, str(latest.tag))["models"] == manifest["models"]:
            return str(latest.tag), False
    except (bentoml.exceptions.NotFound, ZooLoadError):  # none, or one that is no zoo: a new version
        pass
    return str(create_version(manifest, onnx).tag), True


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m release.store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", default="artifacts", help="the folder `python -m export` wrote")
    args = parser.parse_args()
    tag, created = save_to_store(args.artifacts)
    print(f"BentoML model store: {tag} ({'new version' if created else 'unchanged, reused'})", file=sys.stderr)


if __name__ == "__main__":
    main()
