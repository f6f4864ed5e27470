"""Training configuration: a dataclass of commented defaults, overridable from the command line."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from zoo.cli import ArgumentParser


@dataclass
class TrainConfig:
    model: str = "baseline"        # a name from `python -m zoo`
    epochs: int | None = None      # None: the model's recipe (the study's 15; photo and colour 20)
    lr: float | None = None        # Adam learning rate, the peak with a schedule (None: the recipe's;
                                   # the study's 1e-3)
    batch_size: int | None = None  # None: the model's recipe (32, found from the study's figures by
                                   # `make study`: docs/training.md; kaggle 8, photo 32)
    hflip: bool | None = None      # mirror each training image with probability 1/2 (None: the recipe's; off)
    schedule: str | None = None    # "constant" or "cosine" learning rate over all steps (None: the recipe's)
    shift: int | None = None       # move each training image by up to this many pixels in x and y,
                                   # filling with its background (None: the recipe's; 0, off)
    label_smoothing: float | None = None  # cross-entropy label smoothing (None: the recipe's; 0.0)
    class_weights: str | None = None  # cross-entropy class weights from the training counts: "none",
                                   # "sqrt" (1/sqrt(count)) or "balanced" (1/count) (None: the recipe's; none)
    jitter: float | None = None    # colour jitter: each training image scaled by 1 +- jitter and shifted
                                   # by +- jitter per channel, in normalised units (None: the recipe's; 0, off)
    seed: int = 0                  # weight init, shuffling and dropout
    split_seed: int = 0            # which images form the validation (or Kaggle test) split
    val_fraction: float = 0.2      # 48,000 train / 12,000 validation of Fashion-MNIST's 60,000
    trainval: bool = False         # train on train+validation (the study's final retrain)
    threads: int = 1               # torch intra-op threads; 1 keeps results bit-identical from run to run
    portable: bool = False         # the portable mode (training/portable.py): the same weights on every
                                   # x86-64 processor, ~1.8x the time; what publish-weights requires
    data_dir: str = "data"         # Fashion-MNIST lives in <data_dir>/FashionMNIST/raw
    kaggle_dir: str = "data/kaggle"  # styles.csv + images/<id>.jpg
    artifacts: str = "artifacts"   # checkpoints/, reports/, onnx/
    force: bool = False            # retrain even if a finished checkpoint with this config exists
    dev: bool = False              # photo models: train on 80% of the training split and score on the
                                   # other 20% (the development split), never on the test split

    # Fields that change the weights a run produces; a checkpoint resumes only if these match.
    # `epochs` is not among them: training longer continues from the last finished epoch (except
    # under a schedule, which spans all epochs).
    IDENTITY = ("model", "lr", "batch_size", "seed", "split_seed", "val_fraction", "trainval", "threads")
    # Part of the identity only when they differ from the study's recipe, so a checkpoint whose
    # identity lacks them (made before the field existed) still matches a run with the recipe's value.
    IDENTITY_WHEN_CHANGED = {"hflip": False, "schedule": "constant", "dev": False, "shift": 0, "label_smoothing": 0.0,
                             "portable": False, "class_weights": "none", "jitter": 0.0}
    RECIPE = {"epochs": 15, "batch_size": 32, "lr": 1e-3, "hflip": False, "schedule": "constant",
              "shift": 0, "label_smoothing": 0.0, "class_weights": "none",
              "jitter": 0.0}  # the study's, with the batch size `make study` found
    SCHEDULES = ("constant", "cosine")
    CLASS_WEIGHTS = ("none", "sqrt", "balanced")

    def __post_init__(self) -> None:
        for name, ok, rule in (("epochs", lambda v: v >= 1, "must be a positive integer"),
                               ("batch_size", lambda v: v >= 1, "must be a positive integer"),
                               ("val_fraction", lambda v: 0.0 < v < 1.0, "must be between 0 and 1"),
                               ("shift", lambda v: 0 <= v <= 8, "must be between 0 and 8 pixels"),
                               ("jitter", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
                               ("label_smoothing", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
                               ("lr", lambda v: v > 0, "must be positive")):
            if getattr(self, name) is not None and not ok(getattr(self, name)):
                raise ValueError(f"{name} {rule}, got {getattr(self, name)}")
        for name, choices in (("schedule", self.SCHEDULES), ("class_weights", self.CLASS_WEIGHTS)):
            if getattr(self, name) not in (None, *choices):
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}; choose one of: {', '.join(choices)}")

    def resolved(self) -> "TrainConfig":
        """This config with the model's own recipe filled in where a field is left at None."""
        from zoo.registry import get_entry

        if get_entry(self.model).members is not None:
            raise ValueError(f"{self.model} is not trained: it is assembled from the finished models "
                             f"(`python -m training.ensemble`, part of `make train-all`)")
        recipe = {**self.RECIPE, **get_entry(self.model).recipe}
        return dataclasses.replace(self, **{k: v for k, v in recipe.items() if getattr(self, k) is None})

    @classmethod
    def release(cls, model: str) -> "TrainConfig":
        """The recipe of the weights that ship (`make publish-weights` refuses any other): the
        model's own recipe in the portable mode."""
        return cls(model=model, portable=True).resolved()

    def identity(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.IDENTITY}
        out.update({k: getattr(self, k) for k, off in self.IDENTITY_WHEN_CHANGED.items() if getattr(self, k) != off})
        if self.schedule not in (None, "constant"):
            out["epochs"] = self.epochs
        return out


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {text!r}")


def config_parser(prog: str, description: str, skip: tuple[str, ...] = ()) -> ArgumentParser:
    """The parser of a training command (its module docstring, as written, for `description`): one
    --flag per TrainConfig field but `skip`, typed like the field, defaulting to the dataclass."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        base = str(f.type).split(" |")[0]  # "int | None": an int, None meaning the model's recipe
        default = "the model's recipe" if f.default is None else f.default
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=f.default, metavar=base.upper(),
                            type={"bool": parse_bool, "int": int, "float": float}.get(base, str),
                            help=f"(default: {default})")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
