"""Which data a model trains on: the registry's `dataset` field -> its splits and preprocessing."""
from __future__ import annotations

from typing import Any

from zoo.registry import default_preprocess, get_entry

from ..config import TrainConfig
from . import Split
from .kaggle import KaggleSplit, load, stratified_split


def development_split(train: KaggleSplit, fraction: float, split_seed: int) -> dict[str, KaggleSplit]:
    """{'train', 'val', 'test'} carved from the training split alone: a fixed, stratified `fraction`
    of it (split seed + 1) is the development set the photo recipes were chosen on."""
    fit, dev = stratified_split(train.y.numpy(), fraction, split_seed + 1)
    held_out = train.take(dev)
    return {"train": train.take(fit), "val": held_out, "test": held_out}


def load_data(cfg: TrainConfig) -> tuple[dict[str, Split], dict[str, Any]]:
    """The dataset splits for cfg.model and the preprocessing they were made with."""
    entry = get_entry(cfg.model)
    if entry.dataset == "kaggle":
        if cfg.trainval:
            raise ValueError(f"{cfg.model} has no validation split to train on: its held-out "
                             f"{cfg.val_fraction:.0%} is its test set; train it without --trainval")
        splits, spec, _ = load(cfg.kaggle_dir, cfg.val_fraction, cfg.split_seed, default_preprocess(cfg.model))
        return (development_split(splits["train"], cfg.val_fraction, cfg.split_seed) if cfg.dev else splits), spec
    if cfg.dev:
        raise ValueError(f"--dev is for the photo models; {cfg.model} has a validation split of its own")
    from .fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(cfg.data_dir, cfg.val_fraction, cfg.split_seed), default_preprocess(cfg.model)
