"""What other tools check and load the shipped zoo with, written beside it from its manifest
(docs/export.md describes both):

    weights/README.md                            the model card (Hugging Face Hub format; release/cards.py)
    weights/<name>/test_data_set_0/input_0.pb    TensorProto "image"  float32 [N, C, H, W] (the model's input)
    weights/<name>/test_data_set_0/output_0.pb   TensorProto "logits" float32 [N, 10]
    weights/<name>/test_data_set_0/sources.json  which original image each input row is

The test data sets are in the ONNX Model Zoo's layout, so any ONNX runtime can check a model without
this project's code: the first test-split image of each class, read (and the Kaggle split made) by
training's own loaders and preprocessed by `zoo.spec.preprocess` as the service does, and ONNX
Runtime's (CPU) logits. `make publish-weights` writes them with the weights (`release.publish.write`);
for an existing weights/ folder, without retraining:

    python -m release.formats --weights weights [--data-dir data] [--kaggle-dir data/kaggle]

The torch.hub entrypoints are `hubconf.py` at the repository root (read from the registry).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.fileio import write_atomic
from zoo.manifest import MANIFEST, read_file, read_json, sha256
from zoo.pretrained import weights_dir

from . import cards

TEST_DATA_SET = "test_data_set_0"
INPUT_PB = "input_0.pb"
OUTPUT_PB = "output_0.pb"
SOURCES = "sources.json"
FASHION_MNIST_TEST = "FashionMNIST/raw/t10k-images-idx3-ubyte"  # relative to the training config's data_dir


def test_data_files(name: str) -> list[str]:
    """The paths, relative to weights/, of model `name`'s test data set."""
    return [f"{name}/{TEST_DATA_SET}/{f}" for f in (INPUT_PB, OUTPUT_PB, SOURCES)]


def dataset_root(entry: dict[str, Any], override: str | os.PathLike | None = None) -> Path:
    """Where a model's dataset lives: `override`, else its training config's (relative to here)."""
    key = "kaggle_dir" if entry["dataset"] == "kaggle" else "data_dir"
    return Path(override or entry["config"].get(key) or ("data/kaggle" if key == "kaggle_dir" else "data"))


def first_of_each_class(labels: np.ndarray, classes: int) -> list[tuple[int, int]]:
    """(class, index of its first row in `labels`) for each class that occurs."""
    return [(c, int(np.flatnonzero(labels == c)[0])) for c in range(classes) if (labels == c).any()]


def fashion_mnist_originals(root: Path, classes: list[str]) -> list[tuple[dict[str, Any], Any]]:
    """(source record, 28x28 greyscale PIL image) for the first t10k image of each class."""
    from PIL import Image

    from training.data.fashion_mnist import load_pixels

    pixels, labels = load_pixels(root, train=False)
    pixels, labels = pixels.numpy(), labels.numpy()
    return [({"file": FASHION_MNIST_TEST, "index": i, "label": c, "class": classes[c],
              "sha256": sha256(pixels[i].tobytes())}, Image.fromarray(pixels[i], "L"))
            for c, i in first_of_each_class(labels, len(classes))]


def kaggle_originals(root: Path, entry: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(source record, decoded photo) for the first held-out photo of each class that has one, in
    the split the model was scored on (`training.data.kaggle.load` with its config)."""
    from PIL import Image

    from training.data.kaggle import load

    cfg = entry["config"]
    splits, _, _ = load(root, cfg.get("val_fraction", 0.2), cfg.get("split_seed", 0),
                        preprocess=entry["preprocess"], quiet=True)
    test = splits["test"]
    out = []
    for c, i in first_of_each_class(test.y.numpy(), len(entry["classes"])):
        photo_id = int(test.ids[i])
        data = (root / f"images/{photo_id}.jpg").read_bytes()
        out.append(({"file": f"images/{photo_id}.jpg", "id": photo_id, "label": c, "class": entry["classes"][c],
                     "sha256": sha256(data)}, Image.open(io.BytesIO(data))))
    return out


def test_data_set(name: str, entry: dict[str, Any], onnx_bytes: bytes, root: Path) -> dict[str, bytes]:
    """Model `name`'s test data set ({path relative to weights/: bytes}) from its dataset in `root`."""
    import onnxruntime as ort
    from onnx import numpy_helper

    from zoo.spec import preprocess

    originals = (kaggle_originals(root, entry) if entry["dataset"] == "kaggle"
                 else fashion_mnist_originals(root, entry["classes"]))
    x = np.stack([preprocess(img, entry["preprocess"]) for _, img in originals])  # (N, C, H, W)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    in_name, out_name = entry["input"]["name"], entry["output"]["name"]
    (y,) = session.run([out_name], {in_name: x})
    sources = {"model": name, "dataset": entry["dataset"], "split": "test", "preprocess": entry["preprocess"],
               "input": {"name": in_name, "shape": list(x.shape)},
               "output": {"name": out_name, "shape": list(y.shape), "argmax": y.argmax(1).tolist()},
               "images": [record for record, _ in originals]}
    return dict(zip(test_data_files(name), (
        numpy_helper.from_array(x, in_name).SerializeToString(),
        numpy_helper.from_array(y, out_name).SerializeToString(),
        (json.dumps(sources, indent=2) + "\n").encode())))


def build(manifest: dict[str, Any], onnx: dict[str, bytes], data_dir: str | os.PathLike | None = None,
          kaggle_dir: str | os.PathLike | None = None) -> dict[str, bytes]:
    """Every model's test data set ({path relative to weights/: bytes}); `onnx`: file name -> bytes.
    The datasets default to the folders each model was trained from. Raises ZooError naming the fix
    when a dataset is missing."""
    out: dict[str, bytes] = {}
    for name, e in manifest["models"].items():
        root = dataset_root(e, kaggle_dir if e["dataset"] == "kaggle" else data_dir)
        try:
            out.update(test_data_set(name, e, onnx[e["onnx"]], root))
        except (FileNotFoundError, ZooError) as why:
            raise ZooError(f"cannot make {name}'s test data set from {root} ({why}); "
                           f"pass --data-dir/--kaggle-dir") from None
    return out


def write(out: str | os.PathLike, manifest: dict[str, Any], generated: dict[str, bytes]) -> None:
    """Write `generated` (from `build`) and the card into `out`; remove the test data sets of
    models no longer shipped. The card measures the model files, so they must be in `out` first."""
    out = Path(out)
    for path, data in generated.items():
        write_atomic(out / path, data)
    for folder in out.iterdir():
        if folder.is_dir() and (folder / TEST_DATA_SET).is_dir() and folder.name not in manifest["models"]:
            shutil.rmtree(folder)
    write_atomic(out / cards.CARD, cards.render(manifest, out))


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m release.formats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="the published zoo (default: the weights/ package)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST (default: each model's training config)")
    parser.add_argument("--kaggle-dir", default=None, help="the Kaggle set (default: each model's training config)")
    args = parser.parse_args()
    root = Path(args.weights) if args.weights else weights_dir()
    if not (root / MANIFEST).exists():
        raise ZooError(f"no {MANIFEST} in {root}; run `make train-all export publish-weights` first")
    manifest = read_json(root, str(root))
    fix = "restore weights/ or publish again"
    onnx = {e["onnx"]: read_file(root, n, e, "onnx", str(root), fix) for n, e in manifest["models"].items()}
    write(root, manifest, build(manifest, onnx, args.data_dir, args.kaggle_dir))
    print(f"wrote {cards.CARD} and {len(manifest['models'])} test data sets into {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
