"""The one list of model names. Torch-free: building a model imports torch lazily.

Every entry but `ensemble` is a `LeNet5(...)` trained by gradient descent; `ensemble` is assembled
from finished models (training/ensemble.py), so which members it has lives in its checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .spec import FASHION_MNIST_PREPROCESS, input_shape


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)  # LeNet5 keyword arguments
    dataset: str = "fashion-mnist"                        # "fashion-mnist" | "kaggle"
    recipe: dict[str, Any] = field(default_factory=dict)  # training defaults that differ from the study's
    photos: bool = False                                  # model=auto sends product photos to it (zoo/auto.py)
    members: str | None = None  # None: trained; "greedy": assembled by greedy selection (training/ensemble.py)
    preprocess: dict[str, Any] | None = None  # its own (zoo.spec), where not its dataset's (PREPROCESS)


# The colour photo model's input: the Kaggle photos in colour at half size (40x30), normalised with
# their own statistics, not inverted. Full size (80x60) was 0.3 points more accurate on the development
# split but runs at a third of the rate in onnxruntime (docs/kaggle-photo.md, "The colour model").
COLOUR_PREPROCESS: dict[str, Any] = {"channels": 3, "height": 40, "width": 30, "fit": "stretch",
                                     "resample": "lanczos", "invert": "never", "mean": 0.83, "std": 0.28}

_ENTRIES = [
    ModelEntry("baseline", "LeNet-5: conv 6@5x5, conv 16@5x5, avg-pool, fc 120-84-10, ReLU"),
    ModelEntry("dropout", "baseline + dropout p=0.5 after each hidden fc", dict(dropout=0.5)),
    ModelEntry("batchnorm", "baseline + BatchNorm2d after each conv", dict(batchnorm=True)),
    ModelEntry("leakyrelu", "baseline with LeakyReLU instead of ReLU", dict(activation="leakyrelu")),
    ModelEntry("kernelsize", "baseline with 7x7 convs (first padded 3)", dict(kernel_sizes=(7, 7), padding=3)),
    ModelEntry("lesskernelsize", "baseline with a 4x4 first conv (padded 2)", dict(kernel_sizes=(4, 5))),
    ModelEntry("numfilters", "baseline with 12 and 32 conv filters", dict(channels=(12, 32))),
    # A tenth of Fashion-MNIST's training images: smaller batches give it more optimiser steps in
    # the study's 15 epochs (batch 8 chosen on a development split, README "The Kaggle model").
    ModelEntry("kaggle", "baseline trained on Kaggle product photos mapped to the 10 classes",
               dataset="kaggle", recipe=dict(batch_size=8)),
    # Network and recipe chosen on the development split (docs/kaggle-photo.md, "The colour model").
    ModelEntry("colour", "LeNet-5 with BatchNorm and a third conv (16, 32, 64 filters) on 40x30 colour product "
               "photos (Kaggle): mirroring, cosine schedule, class weights 1/sqrt(count)",
               dict(in_channels=3, in_size=(40, 30), channels=(16, 32, 64), kernel_sizes=(5, 3, 3), batchnorm=True),
               dataset="kaggle", photos=True, preprocess=COLOUR_PREPROCESS,
               recipe=dict(batch_size=32, lr=2e-3, epochs=20, hflip=True, schedule="cosine", class_weights="sqrt")),
    # Chosen on a development split (README, "The photo model"): batch 32 at twice the study's
    # learning rate, 20 epochs (a third of batch 8's time, as accurate).
    ModelEntry("photo", "batchnorm with 16 and 32 conv filters, trained on Kaggle product photos: mirroring, "
               "cosine schedule", dict(batchnorm=True, channels=(16, 32)), dataset="kaggle", photos=True,
               recipe=dict(batch_size=32, lr=2e-3, epochs=20, hflip=True, schedule="cosine")),
    # Assembled, not trained (README, "The ensemble").
    ModelEntry("ensemble", "mean probability of the Fashion-MNIST models chosen greedily on the validation split",
               members="greedy"),
]
MODELS: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}

# Kaggle product photos (60x80 colour JPEGs on white) as the `kaggle` model sees them, chosen on a
# development split (README, "The Kaggle model"): stretching edged out padding; the photos' own grey
# statistics gained about a point over 0.5/0.5; "auto" inverts white-background ones (all but 5).
KAGGLE_PREPROCESS: dict[str, Any] = {**FASHION_MNIST_PREPROCESS, "fit": "stretch", "invert": "auto",
                                     "mean": 0.18, "std": 0.27}
PREPROCESS: dict[str, dict[str, Any]] = {"fashion-mnist": FASHION_MNIST_PREPROCESS, "kaggle": KAGGLE_PREPROCESS}


def list_models(dataset: str | None = None) -> list[str]:
    """Registered model names, optionally only those trained on `dataset`."""
    return [n for n, e in MODELS.items() if dataset is None or e.dataset == dataset]


def trainable_models(dataset: str | None = None) -> list[str]:
    """The models trained by gradient descent (all but the assembled ones), optionally of `dataset`."""
    return [n for n in list_models(dataset) if MODELS[n].members is None]


def assembled_models(dataset: str | None = None) -> list[str]:
    """The models assembled from trained ones (training/ensemble.py), optionally of `dataset`."""
    return [n for n in list_models(dataset) if MODELS[n].members is not None]


def ensemble_candidates(name: str) -> list[str]:
    """The models an assembled model `name` may choose its members from: the trainable models of its
    dataset, in registry order."""
    entry = get_entry(name)
    if entry.members is None:
        raise ValueError(f"{name!r} is trained, not assembled from other models")
    return trainable_models(entry.dataset)


def ensemble_kwargs(members: list[str]) -> dict[str, Any]:
    """An assembled model's keyword arguments: {"members": {name: LeNet5 keyword arguments}}, in
    the order given (the order they were chosen in)."""
    return {"members": {n: dict(get_entry(n).kwargs) for n in members}}


def photo_models() -> list[str]:
    """The models model=auto may send product photos to, in registry order."""
    return [n for n, e in MODELS.items() if e.photos]


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def get_model(name: str, **overrides: Any):
    """Build the named model with freshly initialised weights. An assembled model takes `members`
    ({name: LeNet5 keyword arguments}, as its checkpoint stores them), else every candidate."""
    from .model import Ensemble, LeNet5

    entry = get_entry(name)
    if entry.members is not None:
        members = overrides.pop("members", None) or ensemble_kwargs(ensemble_candidates(name))["members"]
        return Ensemble({n: LeNet5(**{**kwargs, **overrides}) for n, kwargs in members.items()})
    return LeNet5(**{**entry.kwargs, **overrides})


def default_preprocess(name: str) -> dict[str, Any]:
    """The preprocessing a model is trained with (zoo.spec): its own if it has one, else its dataset's."""
    entry = get_entry(name)
    return dict(entry.preprocess or PREPROCESS[entry.dataset])


def describe(name: str, **overrides: Any) -> dict[str, Any]:
    """What a user choosing a model wants to know (needs torch to count parameters). An assembled
    model is described with the `members` given (its checkpoint's), else with every candidate."""
    from .model import macs_per_image

    e = get_entry(name)
    model = get_model(name, **overrides)
    return {
        "name": name,
        "description": e.description,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs_per_image(model),
        "dataset": e.dataset,
        "input_shape": list(input_shape(default_preprocess(name))),
        "kwargs": e.kwargs,
        **({"members": list(model.names)} if e.members is not None else {}),
    }
