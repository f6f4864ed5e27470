import json
import subprocess
import sys

import pytest
import torch

import zoo
from zoo.pretrained import shipped_manifest
from zoo.registry import ensemble_candidates, get_model, list_models

# The study's parameter counts (issue table); a change to the architecture must show here.
STUDY_PARAMS = {
    "baseline": 61_706, "dropout": 61_706, "batchnorm": 61_750, "leakyrelu": 61_706,
    "kernelsize": 46_874, "lesskernelsize": 61_652, "numfilters": 117_078, "kaggle": 61_706,
    "photo": 120_478,  # not the study's: batchnorm with numfilters' 32 second-conv filters and 16 first-conv ones
    "colour": 127_870,  # not the study's: batchnorm with a third conv (16, 32, 64 filters) on 3x40x30 colour photos
}
# Assembled from the others: as many parameters as its members (all candidates when none are named).
STUDY_PARAMS["ensemble"] = sum(STUDY_PARAMS[n] for n in ensemble_candidates("ensemble"))


def test_registry_has_the_study_models():
    assert set(STUDY_PARAMS) - {"kaggle"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_param_count(name):
    model = get_model(name)
    assert sum(p.numel() for p in model.parameters()) == STUDY_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward(name):
    torch.manual_seed(0)
    model = get_model(name)
    x = torch.randn(4, *model.input_shape)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="Unknown model 'resnet'.*baseline"):
        get_model("resnet")


def test_cli_json_lists_every_model():
    out = subprocess.run([sys.executable, "-m", "zoo", "--json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == list_models()
    shipped = shipped_manifest()["models"]
    for r in rows:
        # An assembled model's row describes the members its shipped weights hold.
        members = shipped[r["name"]]["members"] if "members" in r and r["name"] in shipped else None
        assert r["params"] == (sum(STUDY_PARAMS[m] for m in members) if members else STUDY_PARAMS[r["name"]])
        assert r["input_shape"] == ([3, 40, 30] if r["name"] == "colour" else [1, 28, 28]) and r["description"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_the_shape_its_preprocessing_makes(name):
    """The network's input (its LeNet5 arguments) and the preprocessing's output (its spec) are
    written in two places of the registry: they must agree."""
    from zoo.registry import default_preprocess
    from zoo.spec import input_shape

    assert get_model(name).input_shape == input_shape(default_preprocess(name))


def test_the_existing_models_keep_their_preprocessing():
    """Colour and non-square sizes changed the spec's code, not the specs of the models before them."""
    from zoo.registry import default_preprocess

    grey = {"size": 28, "grayscale": "L", "fit": "pad", "resample": "lanczos", "invert": "auto", "mean": 0.5, "std": 0.5}
    for name in list_models():
        if name != "colour":
            want = {**grey, "fit": "stretch", "mean": 0.18, "std": 0.27} if name in ("kaggle", "photo") else grey
            assert default_preprocess(name) == want, name


def test_spec_and_registry_do_not_import_torch():
    code = ("import sys, zoo, zoo.spec, zoo.registry, zoo.auto; zoo.list_models(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_classes():
    assert len(zoo.CLASSES) == 10 and zoo.CLASSES[0] == "T-shirt/top" and zoo.CLASSES[9] == "Ankle boot"
