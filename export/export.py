"""Export every checkpoint, prove parity, and write the manifest (`zoo.manifest`'s format)."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from zoo.auto import auto_entry, best_fashion_mnist
from zoo.errors import ZooError
from zoo.fileio import replacing, write_atomic
from zoo.manifest import MANIFEST, MANIFEST_FORMAT, PROJECT, manifest_text, sha256
from zoo.registry import default_preprocess, get_entry, photo_models
from zoo.spec import input_shape

from .onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx, metadata, model_from_checkpoint
from .parity import check_parity, parity_problems

PARITY_SAMPLES = 512


def parity_images(ckpt: dict[str, Any], data_dir: str | None, kaggle_dir: str | None,
                  cache: dict | None = None) -> tuple[torch.Tensor, str]:
    """PARITY_SAMPLES validation images of the checkpoint's own dataset, and words saying what they
    are; `cache` (one dict per run) keeps them for the models trained on the same data."""
    from training.config import TrainConfig

    cfg = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in TrainConfig.__dataclass_fields__})
    cfg = replace(cfg, data_dir=data_dir or cfg.data_dir, kaggle_dir=kaggle_dir or cfg.kaggle_dir)
    key = (ckpt["dataset"], json.dumps(default_preprocess(cfg.model), sort_keys=True), cfg.data_dir,
           cfg.kaggle_dir, cfg.val_fraction, cfg.split_seed)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = _load_parity_images(ckpt, cfg)
    return cache[key]


def _load_parity_images(ckpt: dict[str, Any], cfg: Any) -> tuple[torch.Tensor, str]:
    from training.data.select import load_data

    try:
        splits, _ = load_data(cfg)
    except (ZooError, FileNotFoundError) as e:
        # No dataset on this machine: fixed random inputs still prove the graphs agree.
        print(f"[{ckpt['name']}] no dataset for parity ({e}); using {PARITY_SAMPLES} seeded random images",
              file=sys.stderr)
        x = torch.randn(PARITY_SAMPLES, *input_shape(ckpt["preprocess"]), generator=torch.Generator().manual_seed(0))
        return x, "random (dataset not found)"
    x = splits["val"].x[:PARITY_SAMPLES]
    if ckpt["dataset"] == "kaggle":
        return x, f"kaggle held-out ({cfg.kaggle_dir})"
    from training.data.fashion_mnist import is_real

    return x, "fashion-mnist validation" if is_real(cfg.data_dir) else f"synthetic validation set ({cfg.data_dir})"


def manifest_entry(ckpt: dict[str, Any], onnx_path: Path, parity: dict[str, Any]) -> dict[str, Any]:
    m, a = ckpt["metrics"], ckpt.get("assembled")
    return {
        "onnx": onnx_path.name,
        "sha256": sha256(onnx_path.read_bytes()),
        "params": ckpt["params"],
        "description": get_entry(ckpt["name"]).description,
        "dataset": ckpt["dataset"],
        "metrics": {k: m.get(k) for k in ("train_acc", "val_acc", "test_acc")},
        "parity": parity,
        "classes": ckpt["classes"],
        "preprocess": ckpt["preprocess"],
        "opset": OPSET,
        "input": {"name": INPUT_NAME, "shape": ["batch", *input_shape(ckpt["preprocess"])], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(ckpt["classes"])], "dtype": "float32"},
        "epochs": ckpt["epoch"],
        # The training mode and processor (none for an assembled model): what `make verify-weights` compares.
        "trained_on": ckpt.get("trained_on"),
        # An assembled model's members and how they were chosen.
        **({"members": list(a["members"]),
            "selection": {"method": a["method"], "trace": a["selection"],
                          "candidates_val_acc": {n: c["val_acc"] for n, c in a["candidates"].items()}}} if a else {}),
    }


def export_one(path: Path, onnx_dir: Path, data_dir: str | None, kaggle_dir: str | None,
               cache: dict | None = None) -> dict[str, Any]:
    """Export one checkpoint and check parity; raises ZooError (and publishes nothing) on failure."""
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path)
    onnx_path = onnx_dir / f"{ckpt['name']}.onnx"
    with replacing(onnx_path, suffix=".onnx") as staged:  # in place only once parity holds
        export_onnx(model, metadata(ckpt), staged)
        images, what = parity_images(ckpt, data_dir, kaggle_dir, cache=cache)
        parity = {**check_parity(model, staged, images), "data": what}
        if problems := parity_problems(parity):
            raise ZooError(f"{path}: parity failed: {'; '.join(problems)}")
    return manifest_entry(ckpt, onnx_path, parity)


def export_all(artifacts: str | os.PathLike, data_dir: str | None = None,
               kaggle_dir: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Export every checkpoint in <artifacts>/checkpoints; returns (manifest, {file: error})."""
    from training.checkpoint import checkpoints_dir

    artifacts = Path(artifacts)
    ckpt_dir, onnx_dir = checkpoints_dir(artifacts), artifacts / "onnx"
    paths = sorted(ckpt_dir.glob("*.pt"))
    if not paths:
        raise ZooError(f"no checkpoints in {ckpt_dir}; run `make train-all` first")
    onnx_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    cache: dict = {}  # parity images, shared by the models trained on the same data
    for path in paths:
        try:
            entry = models[path.stem] = export_one(path, onnx_dir, data_dir, kaggle_dir, cache)
        except ZooError as e:
            failures[str(path)] = str(e)
            print(f"error: {e}", file=sys.stderr)
            (onnx_dir / f"{path.stem}.onnx").unlink(missing_ok=True)  # never serve a stale file
            continue
        p = entry["parity"]
        print(f"[{path.stem}] {entry['onnx']}: max abs diff {p['max_abs_diff']:.2e}, argmax agreement "
              f"{100 * p['argmax_agreement']:.1f}% on {p['samples']} {p['data']} images at batch "
              f"{'/'.join(map(str, p['batch_sizes']))}", file=sys.stderr)
    if not models:
        return {}, failures
    manifest = {
        "format": MANIFEST_FORMAT,
        "zoo": PROJECT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "default": best_fashion_mnist(models),  # the default single model
        "auto": auto_entry(models, photo_models()),  # model=auto: the rule and its two models
        "opset": OPSET,
        "models": models,
    }
    write_atomic(artifacts / MANIFEST, manifest_text(manifest))
    return manifest, failures
