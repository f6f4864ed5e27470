"""Images -> the zoo's answers, per model: the one classification path of the service's routes and
of the catalogue job (catalogue/).

    batch = Batch(zoo, ["batchnorm"])          # or Batch(zoo, names, auto=zoo.auto) for model=auto
    batch.add(decode(data))                    # raises, and adds nothing, for an image it cannot take
    answers = batch.results(top_k=3)           # per image: one result dict per model that answers it

Each image is preprocessed once per distinct preprocessing among the models that answer it (as
its manifest says, `zoo.spec`); each model then runs once on all the images it answers. Torch-free.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zoo.auto import AUTO, route
from zoo.spec import to_input, to_pixels_each

from .params import ALL
from .results import results
from .runtime import Zoo


class UnknownModel(ValueError):
    """A `model` the zoo does not serve; `valid` lists what may be asked for instead."""

    def __init__(self, model: str, valid: list[str]) -> None:
        super().__init__(f"unknown model {model!r}; choose one of: {', '.join(valid)}")
        self.valid = valid


def answering(zoo: Zoo, model: str | None) -> tuple[list[str], dict[str, Any] | None]:
    """(the models that may answer, the auto entry or None) for a request's `model`: auto (also
    when None), a model name, or all. Raises UnknownModel."""
    if model is None or model == AUTO:
        return list(dict.fromkeys(zoo.auto["models"].values())), zoo.auto
    if model == ALL:
        return list(zoo.manifest["models"]), None
    if model in zoo.manifest["models"]:
        return [model], None
    raise UnknownModel(model, [AUTO, *zoo.manifest["models"], ALL])


def unconvertible(e: Exception) -> str:
    """The end of the message for an image that decoded but cannot become a model input."""
    return f"cannot be converted to a model input ({type(e).__name__}: {e})"


class Batch:
    """Decoded images waiting to be classified by `names` (with `auto`, the one of them its rule
    picks per image)."""

    def __init__(self, zoo: Zoo, names: list[str], auto: dict[str, Any] | None = None) -> None:
        self.zoo, self.names, self.auto = zoo, names, auto
        self.key_of = {n: zoo.models[n].preprocess_key for n in names}
        self.specs = {self.key_of[n]: zoo.models[n].preprocess for n in names}
        # zoo.spec.preprocess is normalize(to_pixels(...)); the two steps are kept apart to batch the
        # normalisation and to let a client see the pixels a model sees.
        self.pixels: dict[str, list[np.ndarray]] = {key: [] for key in self.specs}
        self.rows: list[dict[str, int]] = []  # per image: its row in pixels[key] for each preprocessing
        self.chosen: list[list[str]] = []     # per image: the models that answer it

    def add(self, image) -> None:
        """Preprocess a decoded PIL image for the models that answer it. On an exception nothing is
        added (e.g. a pixel mode PIL cannot convert to grey)."""
        mine = [route(image, self.auto)] if self.auto else self.names
        keys = list(dict.fromkeys(self.key_of[n] for n in mine))  # each distinct preprocessing once
        done = to_pixels_each(image, [self.specs[key] for key in keys])
        row = {}
        for key, px in zip(keys, done):
            row[key] = len(self.pixels[key])
            self.pixels[key].append(px)
        self.rows.append(row)
        self.chosen.append(mine)

    def results(self, top_k: int) -> list[list[dict[str, Any]]]:
        """Run each model once on its images; per image, one result per model that answers it
        (service/results.py's shape), in the order of `chosen`."""
        batches = {key: to_input(np.stack(px) if len(px) > 1 else px[0][None], self.specs[key])
                   for key, px in self.pixels.items() if px}
        used = dict.fromkeys(n for mine in self.chosen for n in mine)
        answers = {n: results(n, self.zoo.logits(n, batches[self.key_of[n]]), self.zoo.models[n].classes, top_k)
                   for n in used}  # per model, one result per row of its batch
        return [[answers[n][row[self.key_of[n]]] for n in mine] for row, mine in zip(self.rows, self.chosen)]

    def input_pixels(self, i: int, name: str) -> np.ndarray:
        """The uint8 pixels model `name` sees for image `i`."""
        key = self.key_of[name]
        return self.pixels[key][self.rows[i][key]]
