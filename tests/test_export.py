import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.export import export_one
from export.onnx_export import OPSET
from export.parity import check_parity, parity_problems
from tests.conftest import run_export
from training.checkpoint import load_checkpoint
from zoo.auto import FASHION_MNIST, RULE
from zoo.errors import ZooError
from zoo.registry import get_model, list_models


def test_every_model_exports_with_parity(exported_zoo):
    artifacts, _ = exported_zoo
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert manifest["opset"] == OPSET and manifest["default"] in manifest["models"]
    fashion = [n for n in list_models("fashion-mnist")]
    assert set(fashion) <= set(manifest["models"])
    # model=auto: the rule and the two models it picks from, for the service to read.
    auto = manifest["auto"]
    assert auto["rule"] == RULE and auto["models"][FASHION_MNIST] == manifest["default"]
    assert set(auto["models"].values()) <= set(manifest["models"])
    for name, entry in manifest["models"].items():
        path = artifacts / "onnx" / entry["onnx"]
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == OPSET
        assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        p = entry["parity"]
        assert p["samples"] >= 512 and p["batch_sizes"] == [1, 64]
        assert p["max_abs_diff"] <= 1e-4 and p["argmax_agreement"] == 1.0
        assert "synthetic" in p["data"]
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["name"] == name and json.loads(meta["classes"]) == entry["classes"]
        assert json.loads(meta["preprocess"]) == entry["preprocess"]
        assert int(meta["params"]) == entry["params"]
        assert meta["zoo"] == "fashion-zoo" and meta["version"] == importlib.metadata.version("fashion-zoo")
        for key in ("train_acc", "val_acc", "test_acc"):
            assert key in entry["metrics"]
        assert entry["input"]["shape"] == ["batch", 1, 28, 28] and entry["output"]["shape"] == ["batch", 10]


def test_onnx_runs_any_batch_size(exported_zoo):
    artifacts, _ = exported_zoo
    session = ort.InferenceSession(str(artifacts / "onnx" / "numfilters.onnx"), providers=["CPUExecutionProvider"])
    for bs in (1, 3, 100):
        assert session.run(None, {"image": np.zeros((bs, 1, 28, 28), np.float32)})[0].shape == (bs, 10)


def test_model_store_round_trip(exported_zoo):
    artifacts, home = exported_zoo
    manifest = json.loads((artifacts / "manifest.json").read_text())
    stored = sorted((home / "models" / "fashion-zoo").glob("*/manifest.json"))
    assert len(stored) == 1
    assert json.loads(stored[0].read_text())["models"] == manifest["models"]
    for entry in manifest["models"].values():
        data = (stored[0].parent / entry["onnx"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    # Exporting the same checkpoints again reuses the version instead of piling up copies.
    out = run_export(artifacts, home)
    assert out.returncode == 0 and "unchanged" in out.stderr
    assert len(list((home / "models" / "fashion-zoo").glob("*/manifest.json"))) == 1


def test_store_refuses_an_export_whose_file_changed(exported_zoo, tmp_path):
    """`python -m release.store` checks every ONNX file against the manifest before storing it:
    a file changed after the export is named, and no version is made of it."""
    artifacts, _ = exported_zoo
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts / "onnx", copy / "onnx")
    shutil.copy(artifacts / "manifest.json", copy / "manifest.json")
    with open(copy / "onnx" / "baseline.onnx", "ab") as f:
        f.write(b"\0")
    home = tmp_path / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    out = subprocess.run([sys.executable, "-m", "release.store", "--artifacts", str(copy)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "baseline.onnx" in out.stderr and "sha256" in out.stderr and "make export" in out.stderr
    assert not list((home / "models").glob("fashion-zoo/*/manifest.json"))


def test_bad_checkpoints_fail_clearly_and_others_still_export(trained_zoo, tmp_path):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(trained_zoo / "checkpoints", artifacts / "checkpoints")
    ckpts = artifacts / "checkpoints"
    # truncated
    data = (ckpts / "dropout.pt").read_bytes()
    (ckpts / "dropout.pt").write_bytes(data[: len(data) // 2])
    # name differs from file
    shutil.copyfile(ckpts / "baseline.pt", ckpts / "leakyrelu.pt")
    # wrong architecture: numfilters weights under the kernelsize name
    ck = torch.load(ckpts / "numfilters.pt", weights_only=True)
    ck["name"] = "kernelsize"
    torch.save(ck, ckpts / "kernelsize.pt")
    out = run_export(artifacts, tmp_path / "bentoml", store=False)
    assert out.returncode == 2
    err = out.stderr
    assert "dropout.pt: unreadable checkpoint" in err
    assert "leakyrelu.pt: checkpoint is for model 'baseline', not 'leakyrelu'" in err
    assert "kernelsize.pt: weights do not fit the 'kernelsize' architecture" in err
    assert "Traceback" not in err
    manifest = json.loads((artifacts / "manifest.json").read_text())
    # The ensemble's checkpoint holds its members' weights: it exports on its own.
    assert set(manifest["models"]) == {"baseline", "batchnorm", "lesskernelsize", "numfilters", "ensemble"}
    assert sorted(p.name for p in (artifacts / "onnx").iterdir()) == sorted(
        f"{n}.onnx" for n in manifest["models"])


def test_parity_failure_is_reported_with_its_figure(trained_zoo, tmp_path):
    """A graph that disagrees with PyTorch fails the check, naming the measured difference."""
    ckpt = load_checkpoint(trained_zoo / "checkpoints" / "baseline.pt")
    model = get_model("baseline")
    model.load_state_dict(ckpt["state_dict"])
    export_one(trained_zoo / "checkpoints" / "baseline.pt", tmp_path, None, None)
    with torch.no_grad():
        model.classifier[-1].bias += 1e-3  # PyTorch side drifts from the exported graph
    parity = check_parity(model.eval(), tmp_path / "baseline.onnx", torch.randn(64, 1, 28, 28))
    problems = parity_problems(parity)
    assert problems and "max abs diff" in problems[0] and parity["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)


def test_no_checkpoints_is_one_line(tmp_path):
    out = run_export(tmp_path, tmp_path / "bentoml")
    assert out.returncode == 2 and "make train-all" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unfinished_checkpoint_is_not_exported(trained_zoo, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    ck = torch.load(trained_zoo / "checkpoints" / "baseline.pt", weights_only=True)
    ck["complete"] = False
    torch.save(ck, tmp_path / "checkpoints" / "baseline.pt")
    with pytest.raises(ZooError, match="not finished"):
        export_one(tmp_path / "checkpoints" / "baseline.pt", tmp_path, None, None)
