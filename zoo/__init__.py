"""fashion-zoo: LeNet-5 variants for fashion images.

Importing `zoo` (or `zoo.spec`, `zoo.registry`) does not import torch; `zoo.LeNet5` and
`zoo.get_model` do, when first used. `zoo.load_model(name, pretrained=True)` gives the model with
the shipped weights (weights/), `zoo.weights_meta(name)` what they are (zoo/pretrained.py).
"""
from .pretrained import load_model, weights_meta
from .registry import MODELS, describe, get_entry, get_model, list_models
from .spec import CLASSES, MEAN, STD

__all__ = ["MODELS", "CLASSES", "MEAN", "STD", "LeNet5", "describe", "get_entry", "get_model", "list_models",
           "load_model", "weights_meta"]


def __getattr__(name: str):
    if name == "LeNet5":
        from .model import LeNet5

        return LeNet5
    raise AttributeError(name)
