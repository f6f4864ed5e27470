"""The exported zoo as one versioned model, `fashion-zoo`, in the BentoML model store.

`save_to_store` puts `make export`'s zoo there; `service.shipped` imports the shipped weights/
when the store has none. Both make the version with `create_version`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.manifest import MANIFEST, PROJECT, STORE_NAME


def _models_section(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest["models"], sort_keys=True)


def create_version(manifest: dict[str, Any], onnx: dict[str, bytes], manifest_text: str, **labels: str):
    """A new version of `fashion-zoo` holding every model's ONNX bytes (`onnx`: model name -> bytes,
    written under the file name its manifest entry gives) and `manifest_text` (the manifest as
    stored); `labels` are added to the version's (source="shipped"). Returns the bentoml.Model."""
    import bentoml

    labels = {"project": PROJECT, "format": str(manifest["format"]), **labels}
    meta = {"models": sorted(manifest["models"]), "default": manifest["default"], "opset": manifest.get("opset")}
    if "published" in manifest:  # the shipped weights: when and from which commit
        meta.update(published=manifest.get("published"), source_commit=manifest.get("source_commit"))
    with bentoml.models.create(STORE_NAME, labels=labels, metadata=meta) as ref:
        for name, data in onnx.items():  # the bytes given are the bytes stored
            (Path(ref.path) / manifest["models"][name]["onnx"]).write_bytes(data)
        (Path(ref.path) / MANIFEST).write_text(manifest_text)
    return ref


def save_to_store(onnx_dir: Path, manifest_path: Path) -> tuple[str, bool]:
    """Save every ONNX file named in the manifest, plus the manifest, as a new version of
    `fashion-zoo`; returns (tag, created). An identical latest version is reused."""
    import bentoml

    text = manifest_path.read_text()
    manifest = json.loads(text)
    try:
        latest = bentoml.models.get(f"{STORE_NAME}:latest")
        previous = json.loads((Path(latest.path) / MANIFEST).read_text())
        if _models_section(previous) == _models_section(manifest):
            return str(latest.tag), False
    except (bentoml.exceptions.NotFound, FileNotFoundError, json.JSONDecodeError):
        pass
    onnx = {name: (onnx_dir / entry["onnx"]).read_bytes() for name, entry in manifest["models"].items()}
    return str(create_version(manifest, onnx, text).tag), True
