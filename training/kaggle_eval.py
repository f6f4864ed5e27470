"""Score finished checkpoints on the Kaggle test split, and store the figures in them.

    python -m training.kaggle_eval --artifacts artifacts --kaggle-dir data/kaggle

Each photo model gains its confusion matrix and the loader's counts; each Fashion-MNIST model its
cross-domain accuracy, with the preprocessing its own checkpoint carries (what the service would
feed it). `make train-all` runs this after training.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError

from .checkpoint import build_model, finished_checkpoints, save_atomic
from .data.kaggle import KaggleSplit, Summary, add_split_arguments, load
from .metrics import confusion_matrix, per_class_accuracy, predict


def evaluate(artifacts: str | os.PathLike, kaggle_dir: str | os.PathLike, val_fraction: float = 0.2,
             split_seed: int = 0, quiet: bool = False) -> dict[str, float]:
    """Score every finished checkpoint on the Kaggle test split and store the figures in it (a photo
    model's metrics['test_confusion'] and 'kaggle_data', a Fashion-MNIST model's
    metrics['cross_domain']); returns {model: top-1}."""
    splits: dict[str, tuple[KaggleSplit, Summary]] = {}  # by preprocessing spec
    out: dict[str, float] = {}
    for key, path, ckpt in finished_checkpoints(artifacts):
        spec_key = json.dumps(ckpt["preprocess"], sort_keys=True)
        if spec_key not in splits:
            s, _, summary = load(kaggle_dir, val_fraction, split_seed, ckpt["preprocess"],
                                 quiet=quiet or bool(splits))
            splits[spec_key] = (s["test"], summary)
        test, summary = splits[spec_key]
        pred = predict(build_model(ckpt), test)
        correct = int((pred == test.y).sum())
        m = ckpt["metrics"]
        if ckpt["dataset"] == "kaggle":
            cfg = ckpt["config"]
            if (cfg["split_seed"], cfg["val_fraction"]) != (split_seed, val_fraction):
                raise ZooError(f"{path} was trained with split seed {cfg['split_seed']} and held-out "
                               f"fraction {cfg['val_fraction']}; evaluate with --split-seed "
                               f"{cfg['split_seed']} --val-fraction {cfg['val_fraction']}")
            if abs(round(m["test_acc"] * len(test)) - correct) > 1:
                raise ZooError(f"{path} scored {100 * m['test_acc']:.2f}% on its test split but "
                               f"{100 * correct / len(test):.2f}% on the one in {kaggle_dir}: it was "
                               f"trained on other data; point --kaggle-dir at that data, or retrain it")
            m["test_confusion"] = confusion_matrix(test.y, pred)
            ckpt["kaggle_data"] = asdict(summary)
        else:
            m["cross_domain"] = {"test_acc": correct / len(test),
                                 "test_per_class": per_class_accuracy(pred, test.y),
                                 "images": len(test), "split_seed": split_seed,
                                 "test_fraction": val_fraction}
        save_atomic(ckpt, path)
        out[key] = correct / len(test)
        if not quiet:
            print(f"[{key}] Kaggle test split: {100 * correct / len(test):.2f}% top-1 "
                  f"({len(test):,} images)", file=sys.stderr)
    return out


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.kaggle_eval", description=__doc__)
    parser.add_argument("--artifacts", default="artifacts")
    add_split_arguments(parser)
    args = parser.parse_args()
    evaluate(args.artifacts, args.kaggle_dir, args.val_fraction, args.split_seed)


if __name__ == "__main__":
    main()
