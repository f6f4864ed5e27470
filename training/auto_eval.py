"""Score `model=auto` the way the service runs it, from the checkpoints.

    python -m training.auto_eval --artifacts artifacts --data-dir data --kaggle-dir data/kaggle
    python -m training.auto_eval --url http://127.0.0.1:3000 ...   # the same images over HTTP

Each image is encoded as the service receives it (a Fashion-MNIST test image as a PNG file, a
Kaggle test photo as its original JPEG), opened with PIL, routed by zoo.auto's rule, preprocessed
by zoo.spec with the chosen model's own preprocessing, and classified by that model. The two
models are those the export writes into the manifest (`zoo.auto.auto_entry`). Writes
<artifacts>/reports/auto.json; `training.report` puts it in results.md.
"""
from __future__ import annotations

import io
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.auto import auto_entry, route
from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.fileio import write_atomic
from zoo.registry import assembled_models, photo_models
from zoo.spec import preprocess

from .checkpoint import build_model, checkpoints_dir, finished_checkpoints
from .data.kaggle import add_split_arguments, load
from .report import AUTO_SETS, best_single

FASHION_IMAGES = 2000  # Fashion-MNIST test images sent through the rule (the first ones; also all)


@torch.inference_mode()
def single(images: list[Any], ckpt: dict[str, Any], inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """Predicted class of every PIL image by one model, with its own preprocessing (`inputs` keeps
    the preprocessed images per preprocessing, for the next model that shares it)."""
    key = json.dumps(ckpt["preprocess"], sort_keys=True)
    if key not in inputs:
        inputs[key] = torch.from_numpy(np.stack([preprocess(img, ckpt["preprocess"]) for img in images]))
    return build_model(ckpt)(inputs[key]).argmax(1).numpy()


def _score(blobs: list[bytes], labels: np.ndarray, auto: dict[str, Any], ckpts: dict[str, dict[str, Any]],
           compare: list[str], parts: dict[str, tuple[int, str]]) -> dict[str, dict[str, Any]]:
    """{part: figures} for the first n image files of each part ({part: (n, what the images are)}), each
    opened by PIL as the service opens an upload: auto answers with the model its rule routes it to."""
    from PIL import Image

    images = [Image.open(io.BytesIO(b)) for b in blobs]
    chosen = [route(img, auto) for img in images]
    inputs: dict[str, torch.Tensor] = {}
    every = {n: single(images, ckpts[n], inputs) for n in dict.fromkeys([*compare, *sorted(set(chosen))])}
    pred = np.array([every[c][i] for i, c in enumerate(chosen)])
    out = {}
    for part, (n, what) in parts.items():
        routed = chosen[:n]
        out[part] = {
            "data": what, "images": len(routed),
            "auto_acc": float((pred[:n] == labels[:n]).mean()),
            "routed": {m: routed.count(m) for m in sorted(set(routed))},
            "single_acc": {m: float((every[m][:n] == labels[:n]).mean()) for m in compare},
        }
    return out


def fashion_mnist_pngs(data_dir: str | os.PathLike, n: int | None) -> tuple[list[bytes], np.ndarray]:
    """The first `n` (None: all) Fashion-MNIST test images as the service gets them: PNG files."""
    from PIL import Image

    from .data.fashion_mnist import load_pixels

    pixels, labels = load_pixels(data_dir, train=False)
    blobs = []
    for p in pixels[:n].numpy():
        buf = io.BytesIO()
        Image.fromarray(p, "L").save(buf, format="PNG")
        blobs.append(buf.getvalue())
    return blobs, labels[:n].numpy()


def kaggle_photos(kaggle_dir: str | os.PathLike, val_fraction: float, split_seed: int
                  ) -> tuple[list[bytes], np.ndarray]:
    """The Kaggle held-out test photos: their original JPEG files."""
    test = load(kaggle_dir, val_fraction, split_seed, quiet=True)[0]["test"]
    return [(Path(kaggle_dir) / "images" / f"{pid}.jpg").read_bytes() for pid in test.ids.tolist()], test.y.numpy()


def evaluate_auto(artifacts: str | os.PathLike, data_dir: str | os.PathLike | None,
                  kaggle_dir: str | os.PathLike | None, val_fraction: float = 0.2, split_seed: int = 0,
                  fashion_images: int = FASHION_IMAGES, quiet: bool = False) -> dict[str, Any]:
    """Score auto on Fashion-MNIST test PNGs and Kaggle test photos; write reports/auto.json."""
    ckpts = {key: ckpt for key, _, ckpt in finished_checkpoints(artifacts) if key == ckpt["name"]}  # not retrains
    if not ckpts:
        raise ZooError(f"no finished checkpoints in {checkpoints_dir(artifacts)}; run `make train-all` first")
    auto = auto_entry(ckpts, photo_models())  # from each checkpoint's dataset and metrics, as the export does
    fashion = [n for n, c in ckpts.items() if c["dataset"] == "fashion-mnist"]
    photo = [n for n, c in ckpts.items() if c["dataset"] != "fashion-mnist"]
    out: dict[str, Any] = {"auto": auto}
    if data_dir is not None and fashion:
        images, labels = fashion_mnist_pngs(data_dir, None)
        n = min(fashion_images, len(images))
        out.update(_score(images, labels, auto, ckpts, fashion, {
            "fashion-mnist": (n, f"the first {n:,} Fashion-MNIST test images as PNG"),
            "fashion-mnist-all": (len(images), f"all {len(images):,} Fashion-MNIST test images as PNG")}))
    if kaggle_dir is not None and (Path(kaggle_dir) / "styles.csv").exists():
        images, labels = kaggle_photos(kaggle_dir, val_fraction, split_seed)
        out.update(_score(images, labels, auto, ckpts, fashion + photo, {
            "kaggle": (len(images), f"the {len(images):,} Kaggle held-out test photos (original JPEGs)")}))
    write_atomic(Path(artifacts) / "reports" / "auto.json", json.dumps(out, indent=2) + "\n")
    if not quiet:
        for r in (out[key] for key in AUTO_SETS if key in out):
            best = best_single(r["single_acc"])  # an assembled model (the ensemble) is shown beside it
            also = "".join(f", {n} {100 * a:.2f}%" for n, a in r["single_acc"].items() if n in assembled_models())
            print(f"[auto] {r['data']}: {100 * r['auto_acc']:.2f}% top-1 (best single model "
                  f"{best} {100 * r['single_acc'][best]:.2f}%{also}); routed {r['routed']}", file=sys.stderr)
    return out


def models_to_name(info: dict[str, Any]) -> list[str]:
    """The models `evaluate_http` also asks for by name, from GET /models: each model auto picks
    from, and the members of those that are ensembles (the single models auto is compared with)."""
    picked = list(info["auto"]["models"].values())
    return list(dict.fromkeys(picked + [m for p in picked for m in info["models"][p].get("members", [])]))


def evaluate_http(url: str, data_dir: str | os.PathLike, kaggle_dir: str | os.PathLike | None,
                  val_fraction: float = 0.2, split_seed: int = 0, fashion_images: int = FASHION_IMAGES,
                  ) -> dict[str, Any]:
    """The same images sent to a running service (`make serve`), with no model named (auto) and
    with each model auto picks from named, and the members of those that are ensembles:
    {image set: {"auto": top-1, "<model>": top-1, "routed"}}."""
    import httpx

    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/models").json()
        sets = {"fashion-mnist": fashion_mnist_pngs(data_dir, fashion_images)}
        if kaggle_dir is not None and (Path(kaggle_dir) / "styles.csv").exists():
            sets["kaggle"] = kaggle_photos(kaggle_dir, val_fraction, split_seed)
        for key, (blobs, labels) in sets.items():
            r: dict[str, Any] = {"images": len(blobs)}
            for model in (None, *models_to_name(info)):
                answers = [client.post("/classify", params={"model": model} if model else {},
                                       files={"image": ("image", b, "application/octet-stream")}).json()
                           for b in blobs]
                r["auto" if model is None else model] = float(np.mean([a["class_id"] == y for a, y in zip(answers, labels)]))
                if model is None:
                    r["routed"] = dict(Counter(a["model"] for a in answers))
            out[key] = r
            print(f"[auto over HTTP] {key}: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in r.items()
                                                         if isinstance(v, float)) + f"; routed {r['routed']}",
                  file=sys.stderr)
    return out


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.auto_eval", description=__doc__)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--data-dir", default="data")
    add_split_arguments(parser)
    parser.add_argument("--fashion-images", type=int, default=FASHION_IMAGES)
    parser.add_argument("--url", help="score a running service over HTTP instead (e.g. http://127.0.0.1:3000)")
    args = parser.parse_args()
    if args.url:
        evaluate_http(args.url, args.data_dir, args.kaggle_dir, args.val_fraction, args.split_seed,
                      args.fashion_images)
        return
    evaluate_auto(args.artifacts, args.data_dir, args.kaggle_dir, args.val_fraction, args.split_seed,
                  args.fashion_images)


if __name__ == "__main__":
    main()
