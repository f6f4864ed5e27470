"""The zoo's model card, `weights/README.md`, in the Hugging Face Hub's format, from the manifest
(docs/export.md describes it). Every figure comes from the manifest or the shipped files, so a
republish rewrites a true card. `huggingface_hub.ModelCard.load` reads it offline; its
`ModelCardData` folds a many-model `model-index` under one `model_name`, so per-model results are
read from the front matter itself (`huggingface_hub.metadata_load`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.cli import pct, table
from zoo.manifest import PROJECT

CARD = "README.md"
# Per dataset: its name, Hub/Kaggle identifier, where it comes from and its licence as its source
# states it ("unknown" where it states none we could confirm).
DATASETS: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "name": "Fashion-MNIST", "type": "zalando-datasets/fashion_mnist",
        "source": "https://github.com/zalandoresearch/fashion-mnist",
        "license": "MIT (its repository's LICENSE)",
    },
    "kaggle": {
        "name": "Kaggle Fashion Product Images (Small), mapped to the 10 Fashion-MNIST classes",
        "type": "paramaggarwal/fashion-product-images-small",
        "source": "https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-small",
        "license": "unknown (no licence could be confirmed from its Kaggle page; check it before reuse)",
    },
}
# manifest metrics key -> its split, as the model-index and the card name it
SPLITS = {"test_acc": "test", "val_acc": "validation", "train_acc": "train"}
TASK = {"type": "image-classification", "name": "Image Classification"}


def model_index(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One `model-index` entry per model: top-1 accuracy (a fraction, as the manifest has it) per split."""
    out = []
    for name, e in manifest["models"].items():
        ds = DATASETS[e["dataset"]]
        results = [{"task": dict(TASK),
                    "dataset": {"name": ds["name"], "type": ds["type"], "split": split},
                    "metrics": [{"type": "accuracy", "name": "top-1 accuracy", "value": e["metrics"][key]}]}
                   for key, split in SPLITS.items() if e["metrics"].get(key) is not None]
        out.append({"name": name, "results": results})
    return out


def front_matter(manifest: dict[str, Any]) -> dict[str, Any]:
    used = list(dict.fromkeys(e["dataset"] for e in manifest["models"].values()))
    return {
        "license": "mit",
        "library_name": "pytorch",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "lenet-5", "fashion-mnist", "onnx", "pytorch", "torch-hub", PROJECT],
        "datasets": [DATASETS[d]["type"] for d in used],
        "metrics": ["accuracy"],
        "model-index": model_index(manifest),
    }


def _size(root: Path, filename: str) -> int:
    return (root / filename).stat().st_size


def models_table(manifest: dict[str, Any], root: Path) -> list[str]:
    rows = [[f"`{name}`", DATASETS[e["dataset"]]["name"].split(",")[0],
             *(pct(e["metrics"].get(k)) for k in ("test_acc", "val_acc", "train_acc")), e["params"], e["macs"],
             _size(root, e["onnx"]), _size(root, e["state_dict"])] for name, e in manifest["models"].items()]
    return table(["model", "dataset", "test top-1 %", "validation top-1 %", "train top-1 %", "params", "MACs",
                  "ONNX bytes", "state_dict bytes"], rows, "llr")


def _training_data(e: dict[str, Any]) -> str:
    cfg, ds = e["config"], DATASETS[e["dataset"]]["name"]
    frac, seed = cfg.get("val_fraction", 0.2), cfg.get("split_seed", 0)
    if e["dataset"] == "kaggle":
        return (f"{ds}: a stratified {frac:.0%} of each class's usable photos held out as the test split "
                f"(split seed {seed}), the rest trained on; no validation split (the held-out photos are "
                f"the per-epoch curve, so no validation accuracy is reported). The set has no boots: "
                f"`Ankle boot` never occurs in training or test.")
    return (f"{ds}: the training set less a random {frac:.0%} validation split (split seed {seed}), "
            f"which chose the recipe{' and the members' if e.get('members') else ''}; "
            f"test accuracy on its test set (the t10k file).")


def _limits(name: str, e: dict[str, Any], manifest: dict[str, Any]) -> str:
    common = ("Ten clothing classes only: anything else is still given one of them. Not for decisions "
              "about people.")
    if e["dataset"] == "kaggle":
        return (f"Intended for product photos on a plain background (the service's `model=auto` sends "
                f"photos to `{manifest.get('auto', {}).get('models', {}).get('photo', name)}`). It never saw "
                f"an `Ankle boot` (the Kaggle set has no boots), so it cannot be trusted on one; catalogue "
                f"photos of Indian retail (Myntra) are what it knows. {common}")
    return ("Intended for Fashion-MNIST-like input: one centred item, light on a dark background, "
            "28x28 greyscale (larger images are padded and resized by the preprocessing). On product "
            "photos it does poorly: use a photo model (`model=auto` routes them). " + common)


def section(name: str, e: dict[str, Any], manifest: dict[str, Any], root: Path) -> list[str]:
    from .formats import test_data_files

    m = e["metrics"]
    acc = ", ".join(f"{split} {pct(m[key])}%" for key, split in SPLITS.items() if m.get(key) is not None)
    recipe = {k: v for k, v in e["config"].items() if k not in ("data_dir", "kaggle_dir")}
    members = (f"- members: {', '.join(f'`{x}`' for x in e['members'])} "
               f"({e['selection']['method']})" if e.get("members") else None)
    trained_on = e.get("trained_on")
    return [
        f"### `{name}`", "",
        e["description"], "",
        f"- top-1 accuracy: {acc}",
        f"- parameters: {e['params']}; multiply-accumulates per image: {e['macs']}",
        *([members] if members else []),
        f"- training data: {_training_data(e)}",
        f"- recipe ({e['epochs']} epochs): `{json.dumps(recipe, sort_keys=True)}`",
        *([f"- trained in the {trained_on.get('mode')} mode"] if trained_on else []),
        f"- preprocessing (`zoo.spec.preprocess`): `{json.dumps(e['preprocess'], sort_keys=True)}`",
        f"- classes (logit order): {', '.join(f'`{c}`' for c in e['classes'])}",
        f"- input `{e['input']['name']}` float32 {e['input']['shape']}, output `{e['output']['name']}` "
        f"float32 {e['output']['shape']} (opset {e['opset']})",
        f"- ONNX vs PyTorch: max |diff| {e['parity']['max_abs_diff']:.3g} on {e['parity']['samples']} images "
        f"({e['parity']['data']}), argmax agreement {e['parity']['argmax_agreement']:.0%}",
        f"- files: `{e['onnx']}` ({_size(root, e['onnx'])} bytes, sha256 `{e['sha256']}`), "
        f"`{e['state_dict']}` ({_size(root, e['state_dict'])} bytes, sha256 `{e['state_dict_sha256']}`)",
        f"- test data: `{'`, `'.join(test_data_files(name))}`",
        f"- intended use and limits: {_limits(name, e, manifest)}",
        "",
    ]


def render(manifest: dict[str, Any], root: str | Path) -> str:
    """The card for the zoo in `root` (weights/), whose files it measures."""
    import yaml

    root = Path(root)
    licences = [f"- {d['name']}: {d['license']}; {d['source']}" for k, d in DATASETS.items()
                if any(e["dataset"] == k for e in manifest["models"].values())]
    body = [
        f"# {PROJECT}: LeNet-5 variants for fashion images", "",
        f"Published {manifest.get('published')} from commit `{manifest.get('source_commit')}` by "
        f"`{manifest.get('command')}`; generated from `manifest.json` (do not edit by hand). The default "
        f"model is `{manifest.get('default')}`.", "",
        "## Models", "",
        *models_table(manifest, root), "",
        "## Use", "",
        "```python",
        "import torch",
        f'model = torch.hub.load("<owner>/{PROJECT}", "{next(iter(manifest["models"]))}", pretrained=True)',
        "# or, with this package installed: import zoo; zoo.load_model(name, pretrained=True)",
        "```", "",
        "Each ONNX file carries its class names and preprocessing in its `metadata_props`; each model's "
        "`<name>/test_data_set_0/` holds real test inputs and the expected logits (ONNX Model Zoo layout). "
        "Inputs are `zoo.spec.preprocess(image, spec)` with the model's spec below, batched.", "",
        "## Licences", "",
        "- code and weights: MIT",
        *licences, "",
        "## Each model", "",
    ]
    for name, e in manifest["models"].items():
        body += section(name, e, manifest, root)
    head = yaml.safe_dump(front_matter(manifest), sort_keys=False, allow_unicode=True, width=120)
    return f"---\n{head}---\n\n" + "\n".join(body).rstrip() + "\n"
