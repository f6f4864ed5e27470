"""The shipped zoo checked with other tools' means (release/formats.py, hubconf.py): each ONNX file
by onnx.checker, ONNX Runtime and ONNX's reference implementation on its ONNX Model Zoo test data;
the test inputs against the documented preprocessing of their original images; the model card
parsed by huggingface_hub against the manifest; parameters, MACs, sizes and sha256 recomputed, as
torchvision's model tests recompute each weight's meta; torch.hub entrypoints against zoo.load_model."""
from __future__ import annotations

import fnmatch
import gzip
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from release import cards
from tests.conftest import REAL_FASHION_MNIST
from tests.images import KAGGLE_SUBSET, png_of
from zoo import load_model
from zoo.model import macs_per_image
from zoo.pretrained import shipped_manifest, weights_dir
from zoo.registry import list_models

REPO = Path(__file__).resolve().parents[1]
ROOT = weights_dir()
MANIFEST = shipped_manifest()
SHIPPED = MANIFEST["models"]
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="nothing published in weights/ yet")
# Expected logits are ONNX Runtime's; ONNX Runtime on another machine and the reference
# implementation (numpy, another summation order) must agree within the export's parity bound.
TOLERANCE = 1e-4


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def read_test_set(name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(input, expected output, sources) as the ONNX Model Zoo lays them out, read with onnx alone."""
    folder = ROOT / name / "test_data_set_0"
    return (tensor(folder / "input_0.pb"), tensor(folder / "output_0.pb"),
            json.loads((folder / "sources.json").read_text()))


# --- ONNX: checker, ONNX Runtime, reference implementation -------------------------------------

@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_onnx_file_passes_the_checker_and_reproduces_its_test_data(name):
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    e, path = SHIPPED[name], ROOT / SHIPPED[name]["onnx"]
    onnx.checker.check_model(str(path), full_check=True)
    x, want, sources = read_test_set(name)
    n = len(sources["images"])
    assert x.dtype == want.dtype == np.float32 and n >= 8
    assert x.shape == (n, *e["input"]["shape"][1:]) and want.shape == (n, e["output"]["shape"][1])
    runs = {"onnxruntime": ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0],
            "onnx.reference": ReferenceEvaluator(str(path)).run(None, {"image": x})[0]}
    failures = [f"{who}: max |diff| {np.abs(got - want).max():.3g}, argmax {got.argmax(1).tolist()} vs "
                f"{want.argmax(1).tolist()}" for who, got in runs.items()
                if np.abs(got - want).max() > TOLERANCE or (got.argmax(1) != want.argmax(1)).any()]
    assert not failures, f"{name}: " + "; ".join(failures)
    assert want.argmax(1).tolist() == sources["output"]["argmax"]


@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_onnx_metadata_carries_classes_preprocessing_and_version(name):
    e = SHIPPED[name]
    meta = {p.key: p.value for p in onnx.load(str(ROOT / e["onnx"])).metadata_props}
    assert meta["zoo"] == "fashion-zoo" and meta["name"] == name and meta["dataset"] == e["dataset"]
    assert json.loads(meta["classes"]) == e["classes"] and json.loads(meta["preprocess"]) == e["preprocess"]
    assert int(meta["params"]) == e["params"]
    # `version` is written by exports from this release on (tests/test_export.py checks the writer);
    # files exported before it lack the key.
    assert meta.get("version", "x") != ""


# --- the test inputs are the documented preprocessing of real images ---------------------------

def fashion_mnist_pixels(e: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The original t10k images and labels (uint8), from the model's data_dir or Debian's package."""
    raw = REPO / e["config"].get("data_dir", "data") / "FashionMNIST" / "raw"
    opened = []
    for kind in ("images-idx3", "labels-idx1"):
        path = raw / f"t10k-{kind}-ubyte"
        if path.exists():
            opened.append(path.read_bytes())
        elif (REAL_FASHION_MNIST / f"{path.name}.gz").exists():
            opened.append(gzip.decompress((REAL_FASHION_MNIST / f"{path.name}.gz").read_bytes()))
        else:
            return None
    images, labels = opened
    return np.frombuffer(images, np.uint8, offset=16).reshape(-1, 28, 28), np.frombuffer(labels, np.uint8, offset=8)


def kaggle_root(e: dict) -> Path | None:
    for root in (REPO / e["config"].get("kaggle_dir", "data/kaggle"), KAGGLE_SUBSET):
        if (root / "styles.csv").exists():
            return root
    return None


def preprocessing_mismatches(name: str, x: np.ndarray, sources: dict) -> list[str]:
    """Every input row that is not the service's decoding and preprocessing of its original image
    (a Fashion-MNIST image is uploaded as the PNG of its pixels; a photo as its JPEG file)."""
    from service.imaging import decode
    from zoo.spec import preprocess

    e = SHIPPED[name]
    if e["dataset"] == "kaggle":
        root = kaggle_root(e)
        if root is None:
            pytest.skip("the Kaggle set is not installed")
        originals = [(root / s["file"]).read_bytes() for s in sources["images"]]
    else:
        found = fashion_mnist_pixels(e)
        if found is None:
            pytest.skip("the real Fashion-MNIST is not installed")
        pixels, labels = found
        originals = []
        for s in sources["images"]:
            assert labels[s["index"]] == s["label"] and sha256(pixels[s["index"]].tobytes()) == s["sha256"]
            originals.append(png_of(pixels[s["index"]]))
    out = []
    for i, (s, data) in enumerate(zip(sources["images"], originals)):
        if e["dataset"] == "kaggle" and sha256(data) != s["sha256"]:
            out.append(f"row {i}: {s['file']} is not the photo the test data was made from")
        want = preprocess(decode(data), e["preprocess"])
        if not np.array_equal(x[i], want):
            out.append(f"row {i} ({s['file']}): max |diff| {np.abs(x[i] - want).max():.3g} from preprocessing the original")
    return out


@pytest.mark.realdata
@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_inputs_are_the_documented_preprocessing_of_real_test_images(name):
    e = SHIPPED[name]
    x, _, sources = read_test_set(name)
    assert sources["preprocess"] == e["preprocess"] and sources["dataset"] == e["dataset"]
    assert [s["label"] for s in sources["images"]] == sorted({s["label"] for s in sources["images"]})
    assert [s["class"] for s in sources["images"]] == [e["classes"][s["label"]] for s in sources["images"]]
    mismatches = preprocessing_mismatches(name, x, sources)
    assert not mismatches, f"{name}: " + "; ".join(mismatches)
    if e["dataset"] == "kaggle":  # held-out photos: the split the model was scored on
        from training.data.kaggle import read_styles, stratified_split

        items, _ = read_styles(kaggle_root(e))
        _, test_idx = stratified_split(np.array([label for _, label in items]), e["config"]["val_fraction"],
                                       e["config"]["split_seed"])
        held_out = {items[i][0] for i in test_idx}
        assert {s["id"] for s in sources["images"]} <= held_out


@pytest.mark.realdata
@needs_shipped
def test_an_input_that_is_not_the_documented_preprocessing_fails():
    for dataset in ("fashion-mnist", "kaggle"):
        name = next((n for n, e in SHIPPED.items() if e["dataset"] == dataset), None)
        if name is None:
            continue
        x, _, sources = read_test_set(name)
        off_by_one_level = x.copy()
        off_by_one_level[0, 0, 0, 0] += np.float32(1 / 255) / np.float32(SHIPPED[name]["preprocess"]["std"])
        assert preprocessing_mismatches(name, off_by_one_level, sources)
        assert preprocessing_mismatches(name, x[::-1].copy(), sources)  # rows out of order


# --- the model card ----------------------------------------------------------------------------

def card_rows() -> dict[str, list[str]]:
    """The card's table: model name -> its cells after the name."""
    rows = {}
    for line in (ROOT / cards.CARD).read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


@needs_shipped
def test_card_is_read_by_huggingface_hub_and_every_figure_is_the_manifests():
    hub = pytest.importorskip("huggingface_hub")
    path = ROOT / cards.CARD
    card = hub.ModelCard.load(path)  # a local file: no network
    assert card.data.license == "mit" and card.data.library_name == "pytorch"
    assert "image-classification" in card.data.tags and card.data.metrics == ["accuracy"]
    assert set(card.data.datasets) == {cards.DATASETS[e["dataset"]]["type"] for e in SHIPPED.values()}
    assert card.data.eval_results  # the model-index parses
    index = hub.metadata_load(path)["model-index"]  # per model: ModelCardData keeps one model_name
    assert [m["name"] for m in index] == list(SHIPPED)
    for entry in index:
        e = SHIPPED[entry["name"]]
        got = {r["dataset"]["split"]: r["metrics"][0]["value"] for r in entry["results"]}
        want = {split: e["metrics"][key] for key, split in cards.SPLITS.items() if e["metrics"].get(key) is not None}
        assert got == want, entry["name"]
        assert all(r["dataset"]["type"] == cards.DATASETS[e["dataset"]]["type"] for r in entry["results"])
    rows = card_rows()
    assert list(rows) == list(SHIPPED)
    text = path.read_text()
    for name, e in SHIPPED.items():
        m = e["metrics"]
        assert rows[name][1:7] == [pct(m["test_acc"]), pct(m["val_acc"]), pct(m["train_acc"]),
                                   str(e["params"]), str(e["macs"]), str((ROOT / e["onnx"]).stat().st_size)], name
        section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        for fact in (e["sha256"], e["state_dict_sha256"], json.dumps(e["preprocess"], sort_keys=True),
                     ", ".join(f"`{c}`" for c in e["classes"]), f"{e['epochs']} epochs"):
            assert fact in section, (name, fact)
        if e["dataset"] == "kaggle":
            assert "Ankle boot" in section.split("intended use and limits")[1]
    assert "Kaggle" not in text or "unknown" in text.split("## Licences", 1)[1]


@needs_shipped
def test_card_is_what_publish_writes_from_the_manifest():
    assert (ROOT / cards.CARD).read_text() == cards.render(MANIFEST, ROOT), \
        "weights/README.md is stale: run `python -m release.formats --weights weights`"


# --- meta recomputed, as torchvision's tests recompute each weight's -------------------------

@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_parameters_macs_sizes_and_sha256_recomputed_equal_the_manifest_and_the_card(name):
    e, row = SHIPPED[name], card_rows()[name]
    model = load_model(name)
    assert sum(p.numel() for p in model.parameters()) == e["params"] == int(row[4])
    assert macs_per_image(model) == e["macs"] == int(row[5])
    for field, sha_key, cell in (("onnx", "sha256", 6), ("state_dict", "state_dict_sha256", 7)):
        data = (ROOT / e[field]).read_bytes()
        assert sha256(data) == e[sha_key], f"{e[field]} changed"
        assert len(data) == int(row[cell]), f"{e[field]}: the card says {row[cell]} bytes, the file has {len(data)}"


@needs_shipped
def test_generated_files_are_in_the_wheel_and_nothing_else_is_left_over():
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["weights"]
    generated = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py"]
    missed = [f for f in generated if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missed, f"not package data of weights/: {missed}"
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(SHIPPED)


# --- torch.hub ---------------------------------------------------------------------------------

def test_hubconf_has_one_entrypoint_per_registry_model():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # torch.hub.list's rule: every public callable of hubconf is an entrypoint
    public = [f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")]
    assert sorted(public) == sorted(list_models()) and "torch" in hubconf.dependencies


@needs_shipped
@pytest.mark.parametrize("name", list(SHIPPED))
def test_torch_hub_load_gives_the_shipped_model(name):
    hub = torch.hub.load(str(REPO), name, source="local", pretrained=True)
    ref = load_model(name)
    assert not hub.training
    x = torch.from_numpy(read_test_set(name)[0].copy())
    with torch.inference_mode():
        assert torch.equal(hub(x), ref(x))
    assert torch.hub.load(str(REPO), name, source="local").training  # pretrained=False: fresh weights
