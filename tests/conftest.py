"""Shared fixtures: small synthetic datasets written in the real on-disk formats.

`make test` runs the tests in pytest-xdist worker processes, each test module whole on one worker
(its module fixtures start once); the tiny trained and exported zoo and the container image are made
once for all of them (tests/once.py).
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.images import synthetic_images
from tests.once import made_once, shared_dir

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session", autouse=True)
def decoded_photo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-photo cache for the session (training/pixel_cache.py), in its temporary directory
    and shared by the workers (the cache's lock lets one decode while the others wait): the real
    Kaggle photos are decoded once per preprocessing spec, not once per test or worker, and nothing
    is written to the user's own cache. Its entries are linked in, on the same filesystem: a decode
    `make train-all` did is not done again (the cache replaces an entry, never rewrites it, and
    checks each entry's key and sha256 before use)."""
    from training.pixel_cache import ENV, cache_dir

    user = cache_dir()
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        root = tmp_path_factory.mktemp("pixel-cache")
    else:
        root = shared_dir(tmp_path_factory.getbasetemp().parent, "pixel-cache")
        root.mkdir(exist_ok=True)
    for entry in user.glob("*.npz") if user is not None and user.is_dir() else ():
        try:
            os.link(entry, root / entry.name)
        except OSError:  # linked by the other worker, or another filesystem
            pass
    old = os.environ.get(ENV)
    os.environ[ENV] = str(root)
    yield root
    if old is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = old


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, len(labels)) + labels.tobytes())


def make_fashion_mnist(root: Path, n_train: int = 3000, n_test: int = 600) -> Path:
    """A small Fashion-MNIST in torchvision's layout: <root>/FashionMNIST/raw/*-ubyte."""
    raw = root / "FashionMNIST" / "raw"
    write_idx(raw, "train", *synthetic_images(n_train, seed=1))
    write_idx(raw, "t10k", *synthetic_images(n_test, seed=2))
    return root


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


def train_tiny_zoo(artifacts: Path, data_dir: Path, kaggle_dir: Path | None = None, epochs: int = 1) -> Path:
    """A checkpoint of every registry model trained briefly on small data (kaggle only when
    `kaggle_dir` is given), and the ensemble assembled from them."""
    from training.config import TrainConfig
    from training.ensemble import build_all
    from training.train import train
    from zoo.registry import get_entry, trainable_models

    for name in trainable_models():
        if get_entry(name).dataset == "kaggle" and kaggle_dir is None:
            continue
        train(TrainConfig(model=name, epochs=epochs, batch_size=32, data_dir=str(data_dir),
                          kaggle_dir=str(kaggle_dir), artifacts=str(artifacts)), quiet=True)
    build_all(artifacts, data_dir, quiet=True)
    return artifacts


def run_export(artifacts: Path, bentoml_home: Path, store: bool = True) -> subprocess.CompletedProcess:
    """What `make export` runs, in subprocesses with their own BENTOML_HOME (the real command path):
    `python -m export`, then (when that succeeded and `store`) `python -m release.store`. The
    result's stderr holds both commands' stderr; its return code is the last command's."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    out = None
    for module in ("export", "release.store") if store else ("export",):
        run = subprocess.run([sys.executable, "-m", module, "--artifacts", str(artifacts)],
                             capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1])
        if out is not None:
            run.stdout, run.stderr = out.stdout + run.stdout, out.stderr + run.stderr
        out = run
        if out.returncode != 0:
            break
    return out


def _export(to: Path, fmnist_dir: Path) -> None:
    train_tiny_zoo(to / "artifacts", fmnist_dir)
    out = run_export(to / "artifacts", to / "bentoml")
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="session")
def trained_zoo(exported_zoo: tuple[Path, Path]) -> Path:
    """An artifacts dir holding a 1-epoch checkpoint of every Fashion-MNIST registry model (the
    ensemble assembled from them), exported."""
    return exported_zoo[0]


@pytest.fixture(scope="session")
def exported_zoo(fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(artifacts, BENTOML_HOME) after a successful `python -m export` of `trained_zoo`."""
    made = made_once(tmp_path_factory, "zoo", lambda to: _export(to, fmnist_dir))
    return made / "artifacts", made / "bentoml"


@pytest.fixture(scope="session")
def server(exported_zoo: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """A real `bentoml serve` of `exported_zoo` on 127.0.0.1 and a free port, started once and shared
    by every test module that asks for it (a test that needs a fresh server starts its own)."""
    from tests.service_server import serve

    _, home = exported_zoo
    with serve(home, tmp_path_factory.mktemp("serve") / "serve.log") as s:
        yield s


@pytest.fixture(scope="session")
def client(server):
    """An HTTP client for `server`."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


# `make test` hands whole modules to the workers in collection order (`--dist loadfile
# --no-loadscope-reorder`): the longest first, so that no worker is left with one at the end;
# test_catalogue and test_portable do not wait for each other (the portable tests need no exported
# zoo while the catalogue's worker makes it). test_architecture comes before them: it parses every
# module with `ast`, which CPython 3.11.7 cannot do beside another thread parsing ("AST constructor
# recursion depth mismatch", python/cpython gh-106905), and the catalogue's in-process tests leave
# Ray's threads in their worker.
RUN_FIRST = ("test_architecture", "test_catalogue", "test_portable", "test_weights", "test_bench", "test_train")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


# The service's CPU image, built once per session for the container and Kubernetes pod tests.
from container_image import built_image, container_backend, remove_built_image  # noqa: E402,F401


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None and getattr(session.config, "workerinput", None) is None:
        remove_built_image(session.config._tmp_path_factory.getbasetemp())
