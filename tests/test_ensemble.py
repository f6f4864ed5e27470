"""The ensemble: greedy selection, the module, assembling the checkpoint, export and serving."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.images import png_of
from training.checkpoint import build_model, load_checkpoint, save_atomic
from training.config import TrainConfig
from training.ensemble import build, greedy_select
from training.metrics import evaluate
from zoo.errors import ZooError
from zoo.registry import ensemble_candidates, ensemble_kwargs, get_model, list_models, trainable_models


def two_class(p_right: list[float]) -> torch.Tensor:
    """log-probabilities of 2 classes where the right class (1) gets p_right[i] on image i."""
    p = torch.tensor(p_right, dtype=torch.float64)
    return torch.stack([1 - p, p], dim=1).log()


def test_greedy_selection_adds_what_improves_validation_and_stops():
    y = torch.ones(10, dtype=torch.long)
    candidates = {
        "a": two_class([0.9] * 6 + [0.4] * 4),  # alone 60%, the best single model
        "b": two_class([0.45] * 6 + [0.7] * 4),  # alone 40%, but right where a is wrong: a+b 100%
        "c": two_class([0.8] * 5 + [0.3] * 5),  # alone 50%; a+c 60%
    }
    chosen, trace = greedy_select(candidates, y)
    assert chosen == ["a", "b"]  # nothing beats 100%: c never joins, and nothing joins twice
    assert [(s["added"], s["val_acc"], s["members"]) for s in trace] == [("a", 0.6, 1), ("b", 1.0, 2)]
    # Adding c to a does not improve 60%: selection stops at one member.
    chosen, trace = greedy_select({"a": candidates["a"], "c": candidates["c"]}, y)
    assert chosen == ["a"] and len(trace) == 1
    # Ties go to the first candidate.
    assert greedy_select({"c": candidates["a"], "a": candidates["a"]}, y)[0] == ["c"]


def test_the_registry_knows_it_is_assembled():
    assert "ensemble" in list_models("fashion-mnist") and "ensemble" not in trainable_models()
    assert ensemble_candidates("ensemble") == trainable_models("fashion-mnist")
    with pytest.raises(ValueError, match="ensemble is not trained: it is assembled"):
        TrainConfig(model="ensemble").resolved()
    out = subprocess.run([sys.executable, "-m", "training.train", "--model", "ensemble"], capture_output=True, text=True)
    assert out.returncode == 2 and "python -m training.ensemble" in out.stderr and "Traceback" not in out.stderr


def test_output_is_the_log_of_the_members_mean_softmax():
    torch.manual_seed(0)
    model = get_model("ensemble", **ensemble_kwargs(["baseline", "numfilters", "kernelsize"])).eval()
    assert model.names == ["baseline", "numfilters", "kernelsize"]
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        members = torch.stack([m(x).softmax(dim=1) for m in model.members])
        out = model(x)
    torch.testing.assert_close(out, members.mean(0).log(), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.softmax(dim=1), members.mean(0), rtol=0, atol=1e-6)
    # Without members named: every candidate, freshly initialised.
    assert get_model("ensemble").names == ensemble_candidates("ensemble")


@pytest.fixture
def zoo_copy(trained_zoo, tmp_path):
    """A copy of the tiny zoo's checkpoints (the ensemble already assembled in it)."""
    shutil.copytree(trained_zoo / "checkpoints", tmp_path / "checkpoints")
    return tmp_path


def test_build_writes_a_checkpoint_that_rebuilds(zoo_copy, fmnist_dir):
    ckpt = load_checkpoint(zoo_copy / "checkpoints" / "ensemble.pt")
    members = ckpt["assembled"]["members"]
    assert ckpt["complete"] and ckpt["history"] == [] and members
    assert set(members) <= set(ensemble_candidates("ensemble"))
    assert list(ckpt["kwargs"]["members"]) == members
    trace = [s["val_acc"] for s in ckpt["assembled"]["selection"]]
    assert trace == sorted(set(trace))  # every addition improved validation top-1
    assert trace[0] == max(c["val_acc"] for c in ckpt["assembled"]["candidates"].values())
    model = build_model(ckpt)
    assert model.names == members
    from training.data.fashion_mnist import load_fashion_mnist

    splits = load_fashion_mnist(fmnist_dir)
    torch.set_num_threads(1)
    assert evaluate(model, splits["val"])[1] == ckpt["metrics"]["val_acc"] == trace[-1]
    assert evaluate(model, splits["test"])[1] == ckpt["metrics"]["test_acc"]
    assert ckpt["params"] == sum(p.numel() for p in model.parameters())


def test_up_to_date_is_skipped_a_changed_member_rebuilds_and_the_bytes_repeat(zoo_copy, fmnist_dir, capsys):
    path = zoo_copy / "checkpoints" / "ensemble.pt"
    build(zoo_copy, fmnist_dir, force=True, quiet=True)  # here: the config names this artifacts directory
    first = path.read_bytes()
    before = load_checkpoint(path)["config_identity"]["candidates"]["baseline"]
    build(zoo_copy, fmnist_dir)
    assert "up to date" in capsys.readouterr().err and path.read_bytes() == first
    build(zoo_copy, fmnist_dir, force=True, quiet=True)
    assert path.read_bytes() == first  # same members, same data: the same file, byte for byte
    # A member's metrics rewritten (the Kaggle evaluation does that): still up to date.
    member = zoo_copy / "checkpoints" / "baseline.pt"
    ck = load_checkpoint(member)
    ck["metrics"]["cross_domain"] = {"test_acc": 0.5}
    save_atomic(ck, member)
    build(zoo_copy, fmnist_dir)
    assert "up to date" in capsys.readouterr().err
    # A member's weights changed: assembled again.
    with torch.no_grad():
        ck["state_dict"]["classifier.5.bias"] += 1.0
    save_atomic(ck, member)
    from release.publish import recipe_problems

    assert recipe_problems("ensemble", load_checkpoint(path), zoo_copy) == [
        "not assembled from the checkpoints beside it (the weights of baseline changed); "
        "run `python -m training.ensemble` (part of `make train-all`)"]
    build(zoo_copy, fmnist_dir)
    assert "assembling again (the weights of baseline changed)" in capsys.readouterr().err
    assert recipe_problems("ensemble", load_checkpoint(path), zoo_copy) == []
    assert load_checkpoint(path)["config_identity"]["candidates"]["baseline"] != before


def test_missing_member_is_a_clear_error(zoo_copy, fmnist_dir):
    (zoo_copy / "checkpoints" / "numfilters.pt").unlink()
    with pytest.raises(ZooError, match=r"missing in .*checkpoints: numfilters\. Train them first with `make train-all`"):
        build(zoo_copy, fmnist_dir)
    out = subprocess.run([sys.executable, "-m", "training.ensemble", "--artifacts", str(zoo_copy),
                          "--data-dir", str(fmnist_dir)], capture_output=True, text=True)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "numfilters" in lines[0] and "make train-all" in lines[0]


def test_report_has_a_row_and_the_selection_but_no_curve(zoo_copy):
    from training.report import write_reports

    results = write_reports(zoo_copy)
    r = results["ensemble"]
    assert r["members"] and r["epochs"] is None and r["seconds"] is None
    md = (zoo_copy / "reports" / "results.md").read_text()
    assert "| `ensemble` |" in md and "| assembled |" in md and "## `ensemble`: assembled, not trained" in md
    assert not (zoo_copy / "reports" / "ensemble_curves.png").exists()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


MEMBERS = ["batchnorm", "numfilters", "kernelsize"]


@pytest.fixture(scope="module")
def three_members(trained_zoo, fmnist_dir, tmp_path_factory):
    """(artifacts, BENTOML_HOME) of an ensemble of three members, exported with them alone (on the
    easy synthetic data every model is right on every validation image, so the real selection
    stops at one member; here it is made to pick three)."""
    import training.ensemble
    from tests.conftest import run_export

    artifacts = tmp_path_factory.mktemp("three-members")
    shutil.copytree(trained_zoo / "checkpoints", artifacts / "checkpoints")

    def pick_three(candidates, y):
        return MEMBERS, [{"added": m, "val_acc": 1.0, "members": i} for i, m in enumerate(MEMBERS, 1)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.ensemble, "greedy_select", pick_three)
        build(artifacts, fmnist_dir, force=True, quiet=True)
    for path in (artifacts / "checkpoints").glob("*.pt"):
        if path.stem not in (*MEMBERS, "ensemble"):
            path.unlink()  # the other models are not needed here: not exported
    home = tmp_path_factory.mktemp("bentoml")
    out = run_export(artifacts, home)
    assert out.returncode == 0, out.stderr
    return artifacts, home


@pytest.fixture(scope="module")
def three_client(three_members, tmp_path_factory):
    import httpx

    from tests.service_server import serve

    with serve(three_members[1], tmp_path_factory.mktemp("serve") / "serve.log") as s:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            yield c


def test_onnx_export_keeps_parity_and_gives_the_mean_probability(three_members, fmnist_dir):
    artifacts, _ = three_members
    manifest = json.loads((artifacts / "manifest.json").read_text())
    entry = manifest["models"]["ensemble"]
    assert entry["members"] == MEMBERS and [s["added"] for s in entry["selection"]["trace"]] == MEMBERS
    assert entry["parity"]["max_abs_diff"] <= 1e-4 and entry["parity"]["argmax_agreement"] == 1.0
    assert entry["params"] == sum(manifest["models"][m]["params"] for m in MEMBERS)
    from training.data.fashion_mnist import load_fashion_mnist

    x = load_fashion_mnist(fmnist_dir)["test"].x[:64].numpy()

    def run(name):
        s = ort.InferenceSession(str(artifacts / "onnx" / manifest["models"][name]["onnx"]),
                                 providers=["CPUExecutionProvider"])
        return s.run(None, {"image": x})[0]

    mean = np.mean([_softmax(run(m)) for m in MEMBERS], axis=0)
    np.testing.assert_allclose(_softmax(run("ensemble")), mean, atol=1e-6)
    # The best Fashion-MNIST model by validation accuracy (the first of equals) is auto's and the default.
    best = max((n for n, e in manifest["models"].items() if e["dataset"] == "fashion-mnist"),
               key=lambda n: manifest["models"][n]["metrics"]["val_acc"])
    assert manifest["default"] == manifest["auto"]["models"]["fashion-mnist"] == best


def test_the_service_serves_the_ensemble(three_client, three_members, fmnist_dir):
    from training.data.fashion_mnist import load_pixels

    pixels, _ = load_pixels(fmnist_dir, train=False)
    files = {"image": ("a.png", png_of(pixels[0].numpy()), "image/png")}
    r = three_client.post("/classify", params={"model": "ensemble", "top_k": 10}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "ensemble" and math.isclose(sum(body["probabilities"].values()), 1, abs_tol=1e-9)
    every = three_client.post("/classify", params={"model": "all"}, files=files).json()["results"]
    by_model = {a["model"]: a["probabilities"] for a in every}
    assert by_model["ensemble"] == body["probabilities"]
    for label, p in body["probabilities"].items():
        assert p == pytest.approx(np.mean([by_model[m][label] for m in MEMBERS]), abs=1e-6)
    described = three_client.get("/models").json()["models"]["ensemble"]
    assert described["members"] == MEMBERS and described["selection"]["method"].startswith("greedy forward")


def test_auto_eval_over_http_also_names_the_ensembles_members(three_client, fmnist_dir):
    from training.auto_eval import evaluate_http, models_to_name

    info = {"auto": {"models": {"fashion-mnist": "ensemble", "photo": "photo"}},
            "models": {"ensemble": {"members": MEMBERS}, "photo": {}}}
    assert models_to_name(info) == ["ensemble", "photo", *MEMBERS]
    picked = three_client.get("/models").json()["auto"]["models"]["fashion-mnist"]
    out = evaluate_http(str(three_client.base_url), fmnist_dir, None, fashion_images=20)["fashion-mnist"]
    assert out["auto"] == out[picked] and out["routed"] == {picked: 20}
