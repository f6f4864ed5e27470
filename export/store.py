"""The exported zoo as one versioned model, `fashion-zoo`, in the BentoML model store."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

STORE_NAME = "fashion-zoo"


def _models_section(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest["models"], sort_keys=True)


def save_to_store(onnx_dir: Path, manifest_path: Path) -> tuple[str, bool]:
    """Save every ONNX file named in the manifest, plus the manifest, as a new version of
    `fashion-zoo`; returns (tag, created). An identical latest version is reused."""
    import bentoml

    manifest = json.loads(manifest_path.read_text())
    try:
        latest = bentoml.models.get(f"{STORE_NAME}:latest")
        previous = json.loads((Path(latest.path) / "manifest.json").read_text())
        if _models_section(previous) == _models_section(manifest):
            return str(latest.tag), False
    except (bentoml.exceptions.NotFound, FileNotFoundError, json.JSONDecodeError):
        pass
    labels = {"project": "fashion-zoo", "format": str(manifest["format"])}
    meta = {"models": sorted(manifest["models"]), "default": manifest["default"], "opset": manifest["opset"]}
    with bentoml.models.create(STORE_NAME, labels=labels, metadata=meta) as ref:
        for entry in manifest["models"].values():
            shutil.copyfile(onnx_dir / entry["onnx"], Path(ref.path) / entry["onnx"])
        shutil.copyfile(manifest_path, Path(ref.path) / "manifest.json")
    return str(ref.tag), True
