"""The shipped weights (weights/): files against their manifest, ONNX vs PyTorch, accuracy on the
real test sets, the registry covered; `make publish-weights`' refusals and output; `make serve`
importing them into an empty model store."""
from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from release import cards
from release.publish import collect, dirty_code, recipe_problems, write
from release.verify_weights import differences, verdicts
from tests.conftest import REAL_FASHION_MNIST
from tests.images import KAGGLE_SUBSET, png_of, synthetic_images
from training.checkpoint import load_checkpoint
from zoo import load_model, weights_meta
from zoo.errors import ZooError
from zoo.pretrained import shipped_manifest, weights_dir
from zoo.registry import default_preprocess, describe, get_entry, list_models
from zoo.spec import CLASSES

REPO = Path(__file__).resolve().parents[1]
SHIPPED = shipped_manifest()["models"]
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="nothing published in weights/ yet")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the shipped files -------------------------------------------------------------------------

def test_every_registry_model_has_shipped_weights():
    missing = [n for n in list_models() if n not in SHIPPED]
    assert not missing, (f"no shipped weights for {', '.join(missing)}: run "
                         f"`make train-all export publish-weights` and commit weights/")


@needs_shipped
def test_shipped_files_match_their_manifest():
    root, manifest = weights_dir(), shipped_manifest()
    listed = {"__init__.py", "manifest.json", cards.CARD, *manifest["models"]}  # + a test data set per model
    for name, e in SHIPPED.items():
        assert sha256(root / e["state_dict"]) == e["state_dict_sha256"], f"{name}: {e['state_dict']} changed"
        assert sha256(root / e["onnx"]) == e["sha256"], f"{name}: {e['onnx']} changed"
        listed |= {e["state_dict"], e["onnx"]}
    on_disk = {p.name for p in root.iterdir() if p.name != "__pycache__"}
    assert on_disk == listed, f"files in weights/ the manifest does not list: {on_disk - listed}"
    assert manifest["default"] in SHIPPED
    assert manifest["published"] and len(manifest["source_commit"]) == 40 and "publish-weights" in manifest["command"]


@needs_shipped
def test_shipped_weights_are_a_final_publish():
    """Not a draft (`python -m release.publish --draft`): published from committed code, no model
    left out for failing a check."""
    draft = shipped_manifest().get("draft")
    assert not draft, (f"weights/ is a draft (uncommitted code: {', '.join(draft['uncommitted']) or 'none'}; "
                       f"left out: {draft['left_out'] or 'none'}): publish again from a clean checkout "
                       f"with `make train-all export publish-weights`")


@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_model_is_the_registry_full_recipe(name):
    """What shipped is what `make train-all export` makes of today's registry: same architecture,
    preprocessing and recipe, a passed parity check, every file in the wheel."""
    from training.config import TrainConfig

    e = SHIPPED[name]
    assert e["preprocess"] == default_preprocess(name) and e["classes"] == list(CLASSES)
    if get_entry(name).members is not None:  # assembled: its members are the registry's, as shipped
        assert list(e["kwargs"]["members"]) == e["members"] and set(e["members"]) <= set(SHIPPED)
        for member, kwargs in e["kwargs"]["members"].items():
            assert kwargs == SHIPPED[member]["kwargs"] == json.loads(json.dumps(get_entry(member).kwargs))
        assert e["params"] == describe(name, **e["kwargs"])["params"] == sum(SHIPPED[m]["params"] for m in e["members"])
        assert e["macs"] == describe(name, **e["kwargs"])["macs"] == sum(SHIPPED[m]["macs"] for m in e["members"])
        assert e["epochs"] == 0 and e["config"]["members"] == get_entry(name).members
    else:
        assert e["kwargs"] == json.loads(json.dumps(get_entry(name).kwargs))
        assert e["params"] == describe(name)["params"] and e["macs"] == describe(name)["macs"]
        want = TrainConfig.release(name)
        assert e["trained_on"]["mode"] == "portable" and e["trained_on"]["processor"]["vendor"]
        assert e["epochs"] == want.epochs and all(e["config"][k] == v for k, v in want.identity().items())
    assert e["parity"]["max_abs_diff"] <= 1e-4 and e["parity"]["argmax_agreement"] == 1.0
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "weights" in package_data["packages"]
    for f in ("manifest.json", e["state_dict"], e["onnx"]):
        assert any(fnmatch.fnmatch(f, pat) for pat in package_data["package-data"]["weights"]), f


@pytest.fixture(scope="module")
def real_fashion_mnist(tmp_path_factory) -> Path | None:
    """The real Fashion-MNIST prepared as training reads it, or None when it is not installed."""
    if not REAL_FASHION_MNIST.is_dir():
        return None
    from training.data.fashion_mnist import prepare

    root = tmp_path_factory.mktemp("fashion-mnist")
    prepare(root)
    return root


@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_onnx_matches_pytorch(name, real_fashion_mnist):
    """onnxruntime on the shipped ONNX file against the shipped state_dict in PyTorch."""
    import onnxruntime as ort

    model = load_model(name, pretrained=True)
    if model.input_shape != (1, 28, 28):  # colour: its own test data set, real photos preprocessed
        import onnx
        from onnx import numpy_helper

        tensor = onnx.load_tensor(str(weights_dir() / name / "test_data_set_0" / "input_0.pb"))
        x = torch.from_numpy(numpy_helper.to_array(tensor).copy())
        assert tuple(x.shape[1:]) == model.input_shape and len(x) >= 8
    elif real_fashion_mnist is not None:
        from training.data.fashion_mnist import load_fashion_mnist

        x = load_fashion_mnist(real_fashion_mnist)["test"].x[:512]
    else:
        images, _ = synthetic_images(512, seed=3)
        x = (torch.from_numpy(images).float().unsqueeze(1) / 255 - 0.5) / 0.5
    assert not model.training
    with torch.inference_mode():
        want = model(x).numpy()
    session = ort.InferenceSession(str(weights_dir() / SHIPPED[name]["onnx"]), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"image": x[i:i + 64].numpy()})[0] for i in range(0, len(x), 64)])
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.fixture(scope="module")
def split_cache() -> dict:
    """Splits by dataset and settings: models trained on the same data share them (decoding the
    Kaggle photos takes seconds)."""
    return {}


def _data_dirs(real_fashion_mnist: Path | None, dataset: str) -> dict[str, str] | None:
    if dataset == "fashion-mnist":
        return None if real_fashion_mnist is None else {"data_dir": str(real_fashion_mnist)}
    return {"kaggle_dir": str(KAGGLE_SUBSET)} if (KAGGLE_SUBSET / "styles.csv").exists() else None


@pytest.mark.realdata
@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_accuracy_equals_the_manifest(name, real_fashion_mnist, split_cache):
    """The shipped weights score exactly the manifest's test (and validation) accuracy, on the real
    data, evaluated as training evaluated them (one thread, batches of 1,000)."""
    from training.config import TrainConfig
    from training.data.select import load_data
    from training.metrics import evaluate

    e = SHIPPED[name]
    dirs = _data_dirs(real_fashion_mnist, e["dataset"])
    if dirs is None:
        pytest.skip(f"the real {e['dataset']} data is not installed")
    known = {k: v for k, v in e["config"].items() if k in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{**known, **dirs})
    key = json.dumps([e["dataset"], e["preprocess"], cfg.data_dir, cfg.kaggle_dir, cfg.val_fraction,
                      cfg.split_seed, getattr(cfg, "dev", False)], sort_keys=True)
    if key not in split_cache:
        split_cache[key] = load_data(cfg)[0]
    splits = split_cache[key]
    model, threads = load_model(name), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert evaluate(model, splits["test"])[1] == e["metrics"]["test_acc"]
        if e["metrics"]["val_acc"] is not None:
            assert evaluate(model, splits["val"])[1] == e["metrics"]["val_acc"]
    finally:
        torch.set_num_threads(threads)


# --- loading ----------------------------------------------------------------------------------

@needs_shipped
def test_weights_meta_has_torchvisions_shape():
    name = next(iter(SHIPPED))
    meta, e = weights_meta(name), SHIPPED[name]
    assert meta["categories"] == list(CLASSES) and meta["num_params"] == describe(name)["params"]
    assert meta["min_size"] == (28, 28) and meta["macs"] == describe(name)["macs"]
    split = "Fashion-MNIST test" if e["dataset"] == "fashion-mnist" else "Kaggle fashion products test"
    assert meta["_metrics"][split]["acc@1"] == round(100 * e["metrics"]["test_acc"], 2)
    assert meta["recipe"]["epochs"] == e["epochs"] and meta["preprocess"] == e["preprocess"]
    assert meta["_file_size"] > 0 and meta["source_commit"] == shipped_manifest()["source_commit"]


@needs_shipped
def test_load_model_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'resnet'; choose one of: baseline"):
        load_model("resnet")
    root = tmp_path / "weights"
    shutil.copytree(weights_dir(), root, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((root / "manifest.json").read_text())
    gone = next(iter(manifest["models"]))
    entry = manifest["models"].pop(gone)
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match=f"no shipped weights for '{gone}'.*make train MODEL={gone}"):
        load_model(gone, root=root)
    with pytest.raises(ZooError, match=f"no shipped weights for '{gone}'"):
        weights_meta(gone, root=root)
    # a flipped byte in a shipped state_dict is caught before torch reads it
    manifest["models"][gone] = entry
    (root / "manifest.json").write_text(json.dumps(manifest))
    data = bytearray((root / entry["state_dict"]).read_bytes())
    data[len(data) // 2] ^= 1
    (root / entry["state_dict"]).write_bytes(bytes(data))
    with pytest.raises(ZooError, match=f"{entry['state_dict']}: sha256 .* does not match its manifest"):
        load_model(gone, root=root)
    fresh = load_model(gone, pretrained=False)
    assert fresh.training


@needs_shipped
def test_python_m_zoo_shows_the_shipped_weights_and_their_accuracy():
    out = subprocess.run([sys.executable, "-m", "zoo", "--json"], capture_output=True, text=True,
                         cwd=REPO, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    for name, e in SHIPPED.items():
        assert rows[name]["shipped_weights"]
        assert rows[name]["metrics"] == {k: e["metrics"][k] for k in ("val_acc", "test_acc")}


# --- make publish-weights ---------------------------------------------------------------------

def test_publish_refuses_short_epoch_models_in_one_line(exported_zoo, tmp_path):
    artifacts, _ = exported_zoo
    out = subprocess.run([sys.executable, "-m", "release.publish", "--artifacts", str(artifacts),
                          "--out", str(tmp_path / "weights")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and not (tmp_path / "weights").exists()
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to publish weights/: "), out.stderr
    assert "baseline: short-epoch: 1 epochs, the recipe is 15" in lines[0]
    assert "baseline: short-epoch: 1 epochs, the recipe is 15, trained in the native mode" in lines[0]
    assert "parity ran on synthetic" in lines[0]


def test_publish_refuses_unfinished_stale_and_parity_failing_models(exported_zoo, tmp_path):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(exported_zoo[0], artifacts)
    # unfinished: an interrupted run's checkpoint
    ckpt = load_checkpoint(artifacts / "checkpoints" / "dropout.pt")
    torch.save({**ckpt, "complete": False}, artifacts / "checkpoints" / "dropout.pt")
    assert recipe_problems("dropout", {**ckpt, "complete": False})[0].startswith("unfinished (epoch 1")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    # stale: the checkpoint was retrained after its export
    manifest["models"]["kernelsize"]["metrics"]["test_acc"] = 0.5
    # parity: another model's ONNX file under this name (its sha256 made to match)
    onnx_dir = artifacts / "onnx"
    shutil.copyfile(onnx_dir / "leakyrelu.onnx", onnx_dir / "baseline.onnx")
    manifest["models"]["baseline"]["sha256"] = sha256(onnx_dir / "baseline.onnx")
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError) as e:
        collect(artifacts, strict=False)
    msg = str(e.value)
    assert "dropout: unfinished" in msg
    assert f"kernelsize: {onnx_dir / 'kernelsize.onnx'} is not the export of" in msg
    assert "baseline: parity failed: max abs diff" in msg
    assert "numfilters" not in msg and "\n" not in msg
    # a draft ships the rest, says what it left out, and names a default and auto among what ships
    manifest, files = collect(artifacts, strict=False, draft=True)
    assert set(manifest["draft"]["left_out"]) == {"baseline", "dropout", "kernelsize"}
    assert set(manifest["models"]) == set(list_models("fashion-mnist")) - {"baseline", "dropout", "kernelsize"}
    assert manifest["default"] in manifest["models"]
    assert set(manifest["auto"]["models"].values()) <= set(manifest["models"])


def test_dirty_code_lists_uncommitted_and_untracked_files(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "train.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("docs\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    assert dirty_code(tmp_path) == []
    (tmp_path / "training" / "train.py").write_text("a = 2\n")
    (tmp_path / "training" / "new.py").write_text("")
    (tmp_path / "README.md").write_text("other docs\n")  # not code that trains: ignored
    assert sorted(dirty_code(tmp_path)) == ["training/new.py", "training/train.py"]


def test_publish_writes_what_load_model_and_the_service_read(exported_zoo, tmp_path):
    """The mechanism end to end on tiny models (strict checks off): files, manifest, loading."""
    from zoo.manifest import read_verified
    from training.checkpoint import build_model

    artifacts, _ = exported_zoo
    out = tmp_path / "weights"
    manifest, files = collect(artifacts, strict=False)
    assert write(manifest, files, out)
    assert not write(*collect(artifacts, strict=False), out)  # unchanged: nothing rewritten
    served, onnx = read_verified(out, "published")  # the service's own reader accepts it
    assert set(onnx) == set(manifest["models"]) == set(list_models("fashion-mnist"))
    for name, e in served["models"].items():
        ckpt = load_checkpoint(artifacts / "checkpoints" / f"{name}.pt")
        state = torch.load(out / e["state_dict"], weights_only=True)
        assert set(state) == set(ckpt["state_dict"])  # weights only: no optimiser, no history
        reference = build_model(ckpt).state_dict()
        got = load_model(name, root=out).state_dict()
        assert all(torch.equal(got[k], reference[k]) for k in reference)
        assert e["config"].get("epochs", 1) == 1 and "force" not in e["config"] and "artifacts" not in e["config"]
        assert weights_meta(name, root=out)["_metrics"]["Fashion-MNIST test"]["acc@1"] == round(
            100 * ckpt["metrics"]["test_acc"], 2)
    # a model that is no longer published leaves no file behind
    del manifest["models"]["numfilters"], files["numfilters.pt"], files["numfilters.onnx"]
    assert (out / "numfilters" / "test_data_set_0" / "input_0.pb").exists() and (out / "README.md").exists()
    assert write(manifest, files, out)
    assert not (out / "numfilters.pt").exists() and not (out / "numfilters.onnx").exists()
    assert not (out / "numfilters").exists() and "### `numfilters`" not in (out / "README.md").read_text()


def test_verify_lists_every_difference():
    entry = {"state_dict": "baseline.pt", "state_dict_sha256": "a" * 64, "onnx": "baseline.onnx",
             "sha256": "b" * 64, "metrics": {"test_acc": 0.9}}
    rebuilt = {**entry, "sha256": "c" * 64, "metrics": {"test_acc": 0.8}}
    assert differences(entry, entry) == []
    assert differences(entry, rebuilt) == [
        f"baseline.onnx sha256 {'b' * 16}... shipped, {'c' * 16}... rebuilt", "test_acc 0.9 shipped, 0.8 rebuilt"]
    assert verdicts({"models": {"baseline": entry}}, {"models": {}}, {"machine": "x86_64"}) == [
        (False, "[baseline] FAILED: shipped, but not rebuilt")]


# --- make serve on a fresh clone --------------------------------------------------------------

@needs_shipped
def test_serve_imports_the_shipped_zoo_into_an_empty_store_and_an_export_wins(exported_zoo, tmp_path):
    import httpx

    from tests.service_server import bentoml_env, serve

    home = tmp_path / "bentoml"

    def shipped_step() -> str:  # what `make serve` runs before `bentoml serve`
        out = subprocess.run([sys.executable, "-m", "release.shipped"], capture_output=True, text=True,
                             cwd=REPO, env=bentoml_env(home))
        assert out.returncode == 0, out.stderr
        return out.stderr

    first = shipped_step()
    assert first.count("\n") == 1 and "serving the shipped weights" in first and "imported" in first
    assert shipped_manifest()["source_commit"][:12] in first and "make train-all export" in first
    assert "imported" not in shipped_step()  # imported once
    with serve(home, tmp_path / "serve.log") as server:
        images, labels = synthetic_images(1, seed=5)
        r = httpx.post(f"{server.url}/classify?model=all", files={"image": png_of(images[0])}, timeout=60)
        assert r.status_code == 200, r.text
        assert {x["model"] for x in r.json()["results"]} == set(SHIPPED)
        models = httpx.get(f"{server.url}/models", timeout=60).json()
        assert models["store_tag"].startswith("fashion-zoo:")
        assert all(m["sha256"] == SHIPPED[n]["sha256"] for n, m in models["models"].items())
    # new shipped weights (a `git pull`) replace an earlier import of shipped weights
    newer = tmp_path / "weights"
    shutil.copytree(weights_dir(), newer, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((newer / "manifest.json").read_text())
    next(iter(manifest["models"].values()))["description"] += " (republished)"
    (newer / "manifest.json").write_text(json.dumps(manifest))
    code = f"from release.shipped import ensure_store; print(ensure_store({str(newer)!r})[1])"
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                           env=bentoml_env(home))
    assert again.stdout.strip() == "True", again.stderr
    # the user's own export (stored as `make export` stores it) is a newer version: it is served, and
    # the shipped line is gone
    stored = subprocess.run([sys.executable, "-m", "release.store", "--artifacts", str(exported_zoo[0])],
                            capture_output=True, text=True, cwd=REPO, env=bentoml_env(home))
    assert stored.returncode == 0, stored.stderr
    assert shipped_step() == ""


def test_verify_is_bit_for_bit_only_where_the_mode_guarantees_it():
    xeon = {"machine": "x86_64", "vendor": "GenuineIntel", "model": "Xeon", "flags": ["avx2", "avx512f"]}
    epyc = {"machine": "x86_64", "vendor": "AuthenticAMD", "model": "EPYC", "flags": ["avx2"]}
    metrics = {"train_acc": 0.95, "val_acc": 0.91, "test_acc": 0.9}
    entry = {"state_dict": "baseline.pt", "state_dict_sha256": "a" * 64, "onnx": "baseline.onnx", "sha256": "b" * 64,
             "metrics": metrics, "trained_on": {"mode": "portable", "processor": xeon},
             "seed_spread": {"train_acc": 0.001, "val_acc": 0.0005, "test_acc": 0.001}}
    shipped = {"models": {"baseline": entry}}
    other_bits = json.loads(json.dumps(shipped))
    other_bits["models"]["baseline"].update(sha256="c" * 64, metrics={**metrics, "val_acc": 0.9110})
    # portable weights: bit for bit on any x86-64 processor, so other bits fail even within the spread
    [(ok, line)] = verdicts(shipped, shipped, epyc)
    assert ok and "bit for bit" in line and "portable mode" in line
    [(ok, line)] = verdicts(shipped, other_bits, epyc)
    assert not ok and "FAILED bit for bit" in line and "baseline.onnx sha256" in line
    # native weights from another processor: the accuracies, each within 4 seed sds, and why
    native = json.loads(json.dumps(shipped))
    native["models"]["baseline"]["trained_on"]["mode"] = "native"
    [(ok, line)] = verdicts(native, other_bits, epyc)
    assert ok and "not bit for bit" in line and "GenuineIntel Xeon" in line and "AuthenticAMD EPYC" in line
    assert "val 91.00 -> 91.10 (+0.10, within 0.20: 4 x the seed sd 0.05)" in line
    far = json.loads(json.dumps(other_bits))
    far["models"]["baseline"]["metrics"]["val_acc"] = 0.905
    [(ok, line)] = verdicts(native, far, epyc)
    assert not ok and "OUTSIDE" in line
    # ... but on the very processor that made them, native weights must be the same bits too
    [(ok, line)] = verdicts(native, other_bits, xeon)
    assert not ok and "FAILED bit for bit" in line
