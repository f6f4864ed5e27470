"""Checkpoint -> ONNX file: pinned opset, dynamic batch, named input/output, metadata, full check."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from zoo.errors import ZooError
from zoo.manifest import PROJECT, installed_version
from zoo.registry import get_entry

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def model_from_checkpoint(ckpt: dict[str, Any], path: Path) -> nn.Module:
    """Rebuild the registry's architecture for the checkpoint's name and load its weights."""
    name = ckpt.get("name")
    if name != path.stem:
        raise ZooError(f"{path}: checkpoint is for model {name!r}, not {path.stem!r} as its file name says")
    try:
        get_entry(name)
    except ValueError as e:
        raise ZooError(f"{path}: {e}") from None
    if not ckpt.get("complete"):
        raise ZooError(f"{path}: training is not finished (epoch {ckpt.get('epoch')}); "
                       f"run `make train MODEL={name}` to resume it")
    from training.checkpoint import build_model

    try:
        return build_model(ckpt)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ZooError(f"{path}: weights do not fit the {name!r} architecture ({first})") from None


def metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """What travels inside the ONNX file (its `metadata_props`, every value a string; the keys are
    documented in docs/export.md): name, classes, preprocessing, size, accuracy, the zoo's version."""
    m = ckpt["metrics"]
    return {
        "zoo": PROJECT,
        "version": installed_version(),  # the zoo release the export is made with
        "name": ckpt["name"],
        "description": get_entry(ckpt["name"]).description,
        "dataset": ckpt["dataset"],
        "classes": json.dumps(ckpt["classes"]),
        "preprocess": json.dumps(ckpt["preprocess"], sort_keys=True),
        "params": str(ckpt["params"]),
        "metrics": json.dumps({k: m.get(k) for k in ("train_acc", "val_acc", "test_acc")}),
        "epochs": str(ckpt["epoch"]),
        **({"members": json.dumps(ckpt["assembled"]["members"])} if "assembled" in ckpt else {}),
    }


def export_onnx(model: nn.Module, meta: dict[str, str], path: Path) -> None:
    """Write `model` to `path` and check it with onnx.checker's full check (the caller writes to a
    temporary path and puts it in place once parity holds too: export.export_one)."""
    example = torch.zeros(2, *model.input_shape)
    # torch.onnx's exporter reports its progress on stdout; keep our output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=OPSET, dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            dynamo=True, external_data=False, verbose=False)
    proto = onnx.load(str(path))
    proto.producer_name = PROJECT
    proto.doc_string = meta["description"]
    del proto.metadata_props[:]
    # The exporter's per-node debug records hold source paths and stack traces: dropping them
    # makes the same weights give the same bytes (and sha256) on every machine.
    for node in proto.graph.node:
        del node.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    # Name the dynamic dimension the same way in the input and the output.
    for value_info in (proto.graph.input[0], proto.graph.output[0]):
        value_info.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ZooError(f"{meta['name']}: onnx.checker rejected the export ({str(e).splitlines()[0]})") from None
