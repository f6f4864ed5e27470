"""The zoo's shipped weights (weights/, docs/export.md), loaded the way torchvision loads its
pretrained models; every file is checked against its sha256 before it is used. Torch-free except
`load_model`.

    import zoo
    model = zoo.load_model("numfilters", pretrained=True)   # eval-mode torch module, shipped weights
    zoo.weights_meta("numfilters")    # classes, params, MACs, accuracy, recipe, preprocessing, ...
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from .errors import ZooError
from .manifest import MANIFEST, read_file, read_json
from .registry import get_entry, get_model
from .spec import input_shape

# How `weights_meta` names each dataset's splits in "_metrics" (torchvision: "ImageNet-1K").
DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "kaggle": "Kaggle fashion products"}
RESTORE = "restore it with `git checkout -- weights/` (or reinstall fashion-zoo)"


def weights_dir() -> Path:
    """Where the shipped weights live: the `weights` package (weights/ in a clone)."""
    import weights

    return Path(weights.__file__).parent


def shipped_manifest(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The shipped manifest; an empty zoo ({"models": {}}) when nothing has been published."""
    root = Path(root or weights_dir())
    if not (root / MANIFEST).exists():
        return {"models": {}}
    return read_json(root, "shipped weights", RESTORE)


def _shipped_entry(name: str, root: str | os.PathLike | None) -> tuple[dict[str, Any], dict[str, Any]]:
    get_entry(name)  # ValueError naming the valid choices for an unknown model
    manifest = shipped_manifest(root)
    if name not in manifest["models"]:
        shipped = ", ".join(manifest["models"]) or "none"
        raise ZooError(f"no shipped weights for {name!r} (shipped: {shipped}); train it with "
                       f"`make train MODEL={name}`, or publish the whole zoo with "
                       f"`make train-all export publish-weights`")
    return manifest, manifest["models"][name]


def weights_meta(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a user chooses a model's weights by, in the shape of torchvision's `Weights.meta` (plus
    the zoo's own keys: docs/export.md). Torch-free."""
    manifest, e = _shipped_entry(name, root)
    dataset = DATASET_NAMES.get(e["dataset"], e["dataset"])
    metrics = {f"{dataset} {split}": {"acc@1": round(100 * e["metrics"][key], 2)}
               for split, key in (("test", "test_acc"), ("validation", "val_acc"), ("train", "train_acc"))
               if e["metrics"].get(key) is not None}
    path = Path(root or weights_dir()) / e["state_dict"]
    return {
        "categories": list(e["classes"]),
        "num_params": e["params"],
        "min_size": input_shape(e["preprocess"])[1:],
        "recipe": e["config"],
        "_metrics": metrics,
        "_file_size": round(path.stat().st_size / 2**20, 3) if path.exists() else None,
        "_docs": e["description"],
        "macs": e["macs"],
        "preprocess": e["preprocess"],
        "dataset": e["dataset"],
        "parity": {k: e["parity"][k] for k in ("max_abs_diff", "argmax_agreement", "samples", "data")},
        "state_dict": e["state_dict"], "state_dict_sha256": e["state_dict_sha256"],
        "onnx": e["onnx"], "onnx_sha256": e["sha256"],
        "published": manifest.get("published"),
        "source_commit": manifest.get("source_commit"),
        "command": manifest.get("command"),
    }


def load_model(name: str, pretrained: bool = True, root: str | os.PathLike | None = None):
    """The registry model `name` as a torch module: with the shipped weights (checked against their
    sha256) in eval mode, or freshly initialised (train mode) with `pretrained=False`."""
    if not pretrained:
        return get_model(name)
    _, entry = _shipped_entry(name, root)
    # Read once and checked against the manifest's state_dict_sha256: the bytes checked are the bytes loaded.
    data = read_file(root or weights_dir(), name, entry, "state_dict", "shipped weights", RESTORE)
    assembled = get_entry(name).members is not None
    # An assembled model's members are in the manifest; each must still be the registry's architecture.
    shipped = entry.get("kwargs", {}).get("members", {}) if assembled else {name: entry.get("kwargs")}
    for member, kwargs in shipped.items():
        registry_kwargs = json.loads(json.dumps(get_entry(member).kwargs))  # tuples -> lists, as shipped
        if kwargs != registry_kwargs:
            raise ZooError(f"the shipped weights of {member!r}{f' in {name!r}' if assembled else ''} were "
                           f"trained as LeNet5(**{kwargs}) but the registry now builds "
                           f"LeNet5(**{registry_kwargs}); publish them again with "
                           f"`make train-all export publish-weights`")
    import torch

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = get_model(name, **(entry["kwargs"] if assembled else {}))
    model.load_state_dict(state)
    return model.eval()
