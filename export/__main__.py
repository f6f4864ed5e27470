"""Export the zoo: `python -m export --artifacts artifacts --data-dir data [--kaggle-dir DIR]`.

Every checkpoint in <artifacts>/checkpoints becomes <artifacts>/onnx/<name>.onnx once it agrees with
PyTorch on validation images; <artifacts>/manifest.json lists them (docs/export.md).
"""
import sys

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError

from .export import export_all


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST (default: the checkpoint's own)")
    parser.add_argument("--kaggle-dir", default=None, help="Kaggle set (default: the checkpoint's own)")
    args = parser.parse_args()
    manifest, failures = export_all(args.artifacts, args.data_dir, args.kaggle_dir)
    if manifest:
        print(f"{len(manifest['models'])} model(s) exported; default {manifest['default']}; "
              f"manifest {args.artifacts}/manifest.json", file=sys.stderr)
    if failures:
        raise ZooError(f"{len(failures)} checkpoint(s) failed to export: {'; '.join(failures)}")


if __name__ == "__main__":
    main()
