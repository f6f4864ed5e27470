"""What other tools check and load the shipped zoo with, written beside it from its manifest:

    weights/README.md                      the model card (Hugging Face Hub format; release/cards.py)
    weights/<name>/test_data_set_0/*.pb    real inputs and expected logits (ONNX Model Zoo layout;
                                           release/testdata.py)

`make publish-weights` writes them with the weights (`release.publish.write`); for an existing
weights/ folder, without retraining:

    python -m release.formats --weights weights [--data-dir data] [--kaggle-dir data/kaggle]

The torch.hub entrypoints are `hubconf.py` at the repository root (read from the registry, nothing
to generate).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.fileio import write_atomic
from zoo.manifest import MANIFEST, read_file

from . import cards, testdata


def top_level(manifest: dict[str, Any]) -> set[str]:
    """The names this module puts directly in weights/: the card and one folder per model."""
    return {cards.CARD, *manifest["models"]}


def build(manifest: dict[str, Any], onnx: dict[str, bytes], data_dir: str | os.PathLike | None = None,
          kaggle_dir: str | os.PathLike | None = None) -> dict[str, bytes]:
    """Every model's test data set ({path relative to weights/: bytes}); `onnx`: file name -> bytes.
    The datasets default to the folders each model was trained from. Raises ZooError naming the fix
    when a dataset is missing."""
    out: dict[str, bytes] = {}
    for name, e in manifest["models"].items():
        root = kaggle_dir if e["dataset"] == "kaggle" else data_dir
        try:
            out.update(testdata.build(name, e, onnx[e["onnx"]], root))
        except (FileNotFoundError, ZooError) as why:
            raise ZooError(f"cannot make {name}'s test data set from "
                           f"{testdata.dataset_root(e, root)} ({why}); pass --data-dir/--kaggle-dir") from None
    return out


def write(out: str | os.PathLike, manifest: dict[str, Any], generated: dict[str, bytes]) -> None:
    """Write `generated` (from `build`) and the card into `out`; remove the test data sets of
    models no longer shipped. The card measures the model files, so they must be in `out` first."""
    out = Path(out)
    for path, data in generated.items():
        write_atomic(out / path, data)
    for folder in out.iterdir():
        if folder.is_dir() and (folder / testdata.TEST_DATA_SET).is_dir() and folder.name not in manifest["models"]:
            shutil.rmtree(folder)
    write_atomic(out / cards.CARD, cards.render(manifest, out))


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m release.formats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="the published zoo (default: the weights/ package)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST (default: each model's training config)")
    parser.add_argument("--kaggle-dir", default=None, help="the Kaggle set (default: each model's training config)")
    args = parser.parse_args()
    from zoo.manifest import read_json
    from zoo.pretrained import weights_dir

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
