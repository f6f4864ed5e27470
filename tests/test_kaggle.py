"""The Kaggle loader, its split, its preprocessing, and the `kaggle` model through the real trainer."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.images import KAGGLE_SUBSET, article_photo
from training.auto_eval import evaluate_auto
from training.checkpoint import build_model, checkpoint_path, finished_checkpoints, load_checkpoint
from training.config import TrainConfig
from training.data.select import development_split
from training.data.kaggle import ARTICLE_TYPES, LABELS, download, load
from training.kaggle_eval import evaluate
from training.metrics import predict
from training.report import write_reports
from training.train import train
from zoo.errors import ZooError
from zoo.registry import default_preprocess, get_model
from zoo.spec import CLASSES, FASHION_MNIST_PREPROCESS, preprocess

REPO = Path(__file__).resolve().parents[1]
HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def make_kaggle(root: Path) -> dict:
    """A tiny Kaggle layout (styles.csv + images/<id>.jpg) with every case the loader must count.
    Returns what a correct loader finds in it."""
    images = root / "images"
    images.mkdir(parents=True)
    lines = [HEADER]

    def row(pid: int, article: str, name: str = "Brand Item", image: bool = True) -> None:
        lines.append(f"{pid},Men,Apparel,Topwear,{article},Blue,Summer,2012,Casual,{name}")
        if image:
            article_photo(article, pid).save(images / f"{pid}.jpg", quality=90)

    pid = 0
    for article in ("Tshirts", "Tops", "Jeans", "Jeans", "Casual Shoes", "Casual Shoes", "Handbags", "Handbags"):
        for _ in range(6):
            pid += 1
            row(pid, article)
    row(49, "Tshirts", "Myntra Men's Yes, its all about me White T-shirt")  # unquoted comma: repaired
    row(100, "Watches")                                                   # unmapped, with an image
    row(101, "Watches", image=False)                                      # unmapped, no image
    row(102, "Sunglasses")                                                # unmapped
    row(200, "Jeans", image=False)                                        # mapped, image missing
    row(201, "Tshirts")                                                   # mapped, truncated JPEG
    data = (images / "201.jpg").read_bytes()
    (images / "201.jpg").write_bytes(data[:len(data) // 2])
    row(202, "Handbags")                                                  # mapped, not a JPEG at all
    (images / "202.jpg").write_bytes(b"this is not an image")
    lines.append("abc,Men,Apparel")                                       # malformed: cannot be repaired
    (root / "styles.csv").write_text("\n".join(lines) + "\n")
    return {
        "rows": 56, "repaired": 1, "malformed": 1, "duplicates": 0, "unmapped": 3,
        "unmapped_types": {"Watches": 2, "Sunglasses": 1}, "missing": 1, "unreadable": 2, "images": 49,
        "per_class": {"T-shirt/top": 13, "Trouser": 12, "Sneaker": 12, "Bag": 12},
    }


@pytest.fixture(scope="module")
def kaggle_set(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("kaggle")
    return root, make_kaggle(root)


def test_mapping_is_one_table_over_the_classes():
    assert tuple(ARTICLE_TYPES) == CLASSES
    assert len(LABELS) == sum(len(t) for t in ARTICLE_TYPES.values())  # no type feeds two classes
    assert LABELS["Jeans"] == CLASSES.index("Trouser") and LABELS["Heels"] == CLASSES.index("Sandal")


def test_loader_counts_what_it_skips(kaggle_set):
    root, expected = kaggle_set
    splits, spec, summary = load(root, quiet=True)
    got = {k: getattr(summary, k) for k in expected}
    got["per_class"] = {c: n for c, n in summary.per_class.items() if n}
    assert got == expected
    ids = torch.cat([splits["train"].ids, splits["test"].ids]).tolist()
    assert 49 in ids  # the repaired row is used
    assert not {100, 101, 102, 200, 201, 202} & set(ids)
    assert summary.train + summary.test == expected["images"]


def test_split_is_stratified_fixed_and_val_is_test(kaggle_set):
    root, expected = kaggle_set
    splits, _, _ = load(root, val_fraction=0.2, split_seed=0)
    again, _, _ = load(root, val_fraction=0.2, split_seed=0)
    other, _, _ = load(root, val_fraction=0.2, split_seed=1)
    train, test = splits["train"], splits["test"]
    assert splits["val"] is test
    assert torch.equal(test.ids, again["test"].ids) and torch.equal(test.x, again["test"].x)
    assert not torch.equal(test.ids, other["test"].ids)
    assert not set(train.ids.tolist()) & set(test.ids.tolist())
    for c, n in expected["per_class"].items():
        i = CLASSES.index(c)
        assert int((test.y == i).sum()) == round(0.2 * n)
        assert int((train.y == i).sum()) == n - round(0.2 * n)


def test_tensors_are_the_service_preprocessing_of_the_original_jpegs(kaggle_set):
    root, _ = kaggle_set
    splits, spec, _ = load(root)
    assert spec == default_preprocess("kaggle")
    for split in (splits["train"], splits["test"]):
        for i in range(0, len(split), 5):
            with Image.open(root / "images" / f"{int(split.ids[i])}.jpg") as img:
                np.testing.assert_array_equal(split.x[i].numpy(), preprocess(img, spec))
            assert CLASSES[int(split.y[i])] in ("T-shirt/top", "Trouser", "Sneaker", "Bag")


def cfg(tmp_path: Path, kaggle_dir: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"model": "kaggle", "epochs": 1, "batch_size": 16, "kaggle_dir": str(kaggle_dir),
                          "artifacts": str(tmp_path), **kw})


def test_train_kaggle_one_epoch_with_the_real_trainer(tmp_path, kaggle_set):
    root, _ = kaggle_set
    ckpt = train(cfg(tmp_path, root), quiet=True)
    saved = load_checkpoint(checkpoint_path(cfg(tmp_path, root)))
    assert saved["dataset"] == "kaggle" and saved["complete"] and saved["epoch"] == 1
    assert saved["preprocess"] == default_preprocess("kaggle")
    assert saved["kwargs"] == {} and saved["params"] == sum(p.numel() for p in get_model("baseline").parameters())
    per_class = ckpt["metrics"]["test_per_class"]
    assert set(per_class) == set(CLASSES) and per_class["Ankle boot"] is None
    assert 0 <= ckpt["metrics"]["test_acc"] <= 1


def test_trainval_is_refused_for_kaggle(tmp_path, kaggle_set):
    with pytest.raises(ValueError, match="no validation split"):
        train(cfg(tmp_path, kaggle_set[0], trainval=True), quiet=True)


def test_evaluate_and_report_kaggle_and_cross_domain(tmp_path, kaggle_set, fmnist_dir):
    root, expected = kaggle_set
    train(cfg(tmp_path, root), quiet=True)
    train(cfg(tmp_path, root, model="baseline", data_dir=str(fmnist_dir)), quiet=True)
    scores = evaluate(tmp_path, root, quiet=True)
    assert set(scores) == {"kaggle", "baseline"}

    # The cross-domain figure is what the service would do: the baseline's own spec on the JPEGs.
    baseline = load_checkpoint(tmp_path / "checkpoints" / "baseline.pt")
    assert baseline["preprocess"] == FASHION_MNIST_PREPROCESS
    model = get_model("baseline")
    model.load_state_dict(baseline["state_dict"])
    model.eval()
    test = load(root)[0]["test"]
    correct = 0
    for pid, y in zip(test.ids.tolist(), test.y.tolist()):
        with Image.open(root / "images" / f"{pid}.jpg") as img:
            x = torch.from_numpy(preprocess(img, FASHION_MNIST_PREPROCESS))[None]
        with torch.no_grad():
            correct += int(model(x).argmax(1)) == y
    assert baseline["metrics"]["cross_domain"]["test_acc"] == pytest.approx(correct / len(test))
    assert scores["baseline"] == pytest.approx(correct / len(test))

    results = write_reports(tmp_path)
    saved = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    k = saved["kaggle"]
    assert k["val_acc"] is None and k["dataset"] == "kaggle"
    assert sum(map(sum, k["test_confusion"])) == len(test)
    assert np.trace(np.array(k["test_confusion"])) / len(test) == pytest.approx(k["test_acc"])
    assert k["data"]["repaired"] == 1 and k["data"]["unreadable"] == 2 and k["data"]["missing"] == 1
    cd = saved["baseline"]["cross_domain"]
    assert cd["images"] == len(test) and set(cd["test_per_class"]) == set(CLASSES)
    assert (tmp_path / "reports" / "kaggle_confusion.png").stat().st_size > 0
    assert (tmp_path / "reports" / "kaggle_curves.png").stat().st_size > 0
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "## Cross-domain" in md and "| `baseline` |" in md and "## `kaggle`" in md


def test_development_split_is_carved_from_the_training_split(kaggle_set):
    root, _ = kaggle_set
    splits, _, _ = load(root)
    dev = development_split(splits["train"], 0.2, 0)
    fit, held = set(dev["train"].ids.tolist()), set(dev["test"].ids.tolist())
    assert dev["val"] is dev["test"] and not fit & held
    assert fit | held == set(splits["train"].ids.tolist())  # the test split plays no part
    for c in range(len(CLASSES)):
        n = int((splits["train"].y == c).sum())
        assert int((dev["test"].y == c).sum()) == round(0.2 * n)
    again = development_split(splits["train"], 0.2, 0)
    assert torch.equal(again["test"].ids, dev["test"].ids)


def test_photo_model_trains_with_its_recipe_on_the_dev_split(tmp_path, kaggle_set):
    root, _ = kaggle_set
    c = cfg(tmp_path, root, model="photo", epochs=1, batch_size=None, dev=True)
    ckpt = train(c, quiet=True)
    assert checkpoint_path(c) == tmp_path / "checkpoints" / "dev" / "photo.pt"  # not what export reads
    recipe = TrainConfig(model="photo").resolved()
    assert {k: ckpt["config"][k] for k in ("hflip", "schedule", "batch_size", "lr")} == {
        "hflip": True, "schedule": "cosine", "batch_size": recipe.batch_size, "lr": recipe.lr}
    dev = development_split(load(root)[0]["train"], 0.2, 0)["test"]
    pred = predict(build_model(ckpt), dev)
    assert ckpt["metrics"]["test_acc"] == pytest.approx(float((pred == dev.y).float().mean()))  # scored on dev
    assert sum(1 for _ in finished_checkpoints(tmp_path)) == 0


def test_auto_scored_as_the_service_runs_it(tmp_path, kaggle_set, fmnist_dir):
    """Fashion-MNIST test PNGs go to the best Fashion-MNIST model, photos to the photo model, and
    auto scores what those models score on them (within 0.5 points: here, exactly)."""
    root, _ = kaggle_set
    train(cfg(tmp_path, root, model="photo", epochs=1), quiet=True)
    train(cfg(tmp_path, root), quiet=True)
    train(cfg(tmp_path, root, model="baseline", data_dir=str(fmnist_dir)), quiet=True)
    evaluate(tmp_path, root, quiet=True)
    out = evaluate_auto(tmp_path, fmnist_dir, root, fashion_images=300, quiet=True)
    assert out["auto"]["models"] == {"fashion-mnist": "baseline", "photo": "photo"}
    fm, photos = out["fashion-mnist"], out["kaggle"]
    assert fm["images"] == 300 and fm["routed"] == {"baseline": 300}
    assert photos["routed"] == {"photo": photos["images"]} and set(photos["single_acc"]) == {"baseline", "kaggle", "photo"}
    assert abs(fm["auto_acc"] - max(fm["single_acc"].values())) <= 0.005
    assert abs(photos["auto_acc"] - photos["single_acc"]["photo"]) <= 0.005
    # The photo model's test figure from training is the one auto_eval measures from the JPEGs.
    assert photos["single_acc"]["photo"] == pytest.approx(load_checkpoint(tmp_path / "checkpoints" / "photo.pt")["metrics"]["test_acc"])
    write_reports(tmp_path)
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "## `model=auto`" in md and "`photo`" in md and "## `kaggle` and `photo`" in md
    assert json.loads((tmp_path / "reports" / "auto.json").read_text()) == json.loads(json.dumps(out))


def test_evaluate_refuses_another_split(tmp_path, kaggle_set):
    root, _ = kaggle_set
    train(cfg(tmp_path, root), quiet=True)
    with pytest.raises(ZooError, match="--split-seed 0"):
        evaluate(tmp_path, root, split_seed=1, quiet=True)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO)


def test_missing_kaggle_data_is_one_line(tmp_path):
    out = _cli("training.train", "--model", "kaggle", "--kaggle-dir", str(tmp_path / "none"),
               "--artifacts", str(tmp_path / "a"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "styles.csv" in out.stderr and "make data-kaggle" in out.stderr
    assert not (tmp_path / "a").exists()


def test_download_keeps_data_already_there(kaggle_set):
    assert download(kaggle_set[0]).startswith("already present")


@pytest.mark.skipif(importlib.util.find_spec("kagglehub") is not None, reason="kagglehub is installed")
def test_download_without_kagglehub_is_one_line(tmp_path):
    out = _cli("training.data.kaggle", "download", "--kaggle-dir", str(tmp_path / "k"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "kagglehub is not installed" in out.stderr and "pip install" in out.stderr


@pytest.mark.realdata
@pytest.mark.skipif(not (KAGGLE_SUBSET / "styles.csv").exists(), reason="the Kaggle subset is not here")
def test_real_kaggle_subset():
    """The shared subset's documented quirks: 44,446 rows, 22 with unquoted commas, most images absent."""
    splits, _, s = load(KAGGLE_SUBSET, quiet=True)
    assert s.rows == 44_446 and s.repaired == 22 and s.malformed == 0 and s.duplicates == 0
    assert s.unreadable == 0 and s.images + s.missing + s.unmapped == s.rows
    assert s.per_class["Ankle boot"] == 0 and all(s.per_class[c] > 0 for c in CLASSES[:-1])
    assert len(splits["test"]) == s.test and abs(s.test - 0.2 * s.images) < len(CLASSES)


def test_ablation_ends_with_the_registry_recipe(tmp_path, kaggle_set):
    """`python -m training.ablation`: one row per ingredient, on the development split, the last
    row being exactly the `photo` recipe (so the README's table describes the shipped model)."""
    from training.ablation import STEPS, markdown, run

    rows = run(TrainConfig(kaggle_dir=str(kaggle_set[0]), artifacts=str(tmp_path)), seeds=[0])
    assert [r["step"] for r in rows] == [s for s, _ in STEPS] and all(0 <= r["mean"] <= 100 for r in rows)
    last = load_checkpoint(tmp_path / f"step{len(STEPS) - 1}" / "checkpoints" / "dev" / "photo.pt")
    recipe = TrainConfig(model="photo").resolved()
    assert {k: last["config"][k] for k in ("epochs", "batch_size", "hflip", "schedule", "dev")} == {
        "epochs": recipe.epochs, "batch_size": recipe.batch_size, "hflip": recipe.hflip,
        "schedule": recipe.schedule, "dev": True}
    assert len(markdown(rows, [0]).splitlines()) == 2 + len(STEPS)
