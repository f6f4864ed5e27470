"""Reports from checkpoints: results.json, results.md (beside the study's numbers) and curves.

    python -m training.report --artifacts artifacts
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from zoo.errors import ArgumentParser, cli
from zoo.registry import list_models

# The study's published top-1 (percent): train / validation, and test for its final comparison.
STUDY = {
    "baseline": (95.32, 90.98), "dropout": (89.73, 89.81), "batchnorm": (94.8, 90.675),
    "leakyrelu": (95.34, 90.575), "kernelsize": (93.33, 90.075), "lesskernelsize": (95.035, 90.20),
    "numfilters": (96.64, 91.61), "kaggle": (95.38, None),
}
STUDY_TEST = {"numfilters": 90.27, "numfilters+trainval": 90.94, "kaggle": 91.76}


def row(ckpt: dict[str, Any]) -> dict[str, Any]:
    m = ckpt["metrics"]
    out = {
        "params": ckpt["params"],
        "train_acc": m["train_acc"], "val_acc": m["val_acc"], "test_acc": m["test_acc"],
        "epochs": ckpt["epoch"], "seconds": round(ckpt["seconds"], 1),
        "seconds_per_epoch": round(ckpt["seconds"] / ckpt["epoch"], 2),
        "dataset": ckpt["dataset"],
    }
    if ckpt["config"]["trainval"]:
        out["retrain_of"] = ckpt["name"]
    for key in ("test_per_class", "cross_domain"):
        if key in m:
            out[key] = m[key]
    return out


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def results_markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Results", "",
        "Top-1 accuracy (%), ours beside the study's. Train accuracy is measured during the last",
        "epoch (in training mode, as the study did), validation on the fixed 12,000-image split,",
        "test on the 10,000 Fashion-MNIST test images (for `kaggle`: its own held-out 20%).", "",
        "| model | params | train | val | test | study train | study val | epochs | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        study = (None, None) if "retrain_of" in r else STUDY.get(name, (None, None))
        st = "–" if study[0] is None else f"{study[0]:.2f}"
        sv = "–" if study[1] is None else f"{study[1]:.2f}"
        lines.append(f"| `{name}` | {r['params']:,} | {_pct(r['train_acc'])} | {_pct(r['val_acc'])} | "
                     f"{_pct(r['test_acc'])} | {st} | {sv} | {r['epochs']} | {r['seconds']:.0f} |")
    retrained = [n for n, r in results.items() if "retrain_of" in r]
    for name in retrained:
        base = results[name]["retrain_of"]
        lines += [
            "", f"## Train vs train+validation ({base}, best by validation accuracy)", "",
            "| model | trained on | test (ours) | test (study, numfilters) |", "|---|---|---:|---:|",
            f"| `{base}` | 48,000 train | {_pct(results[base]['test_acc'])} | {STUDY_TEST['numfilters']:.2f} |",
            f"| `{name}` | 60,000 train+val | {_pct(results[name]['test_acc'])} | "
            f"{STUDY_TEST['numfilters+trainval']:.2f} |",
        ]
    total = sum(r["seconds"] for r in results.values())
    lines += ["", f"Training time, all models: {total:.0f} s of compute (see `seconds` per model)."]
    return "\n".join(lines) + "\n"


def plot_curves(name: str, history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("val", "validation")):
        if f"{key}_acc" in history[0]:
            ax_acc.plot(epochs, [100 * h[f"{key}_acc"] for h in history], marker="o", label=label)
            ax_loss.plot(epochs, [h[f"{key}_loss"] for h in history], marker="o", label=label)
    ax_acc.set(title=f"{name}: accuracy", xlabel="epoch", ylabel="top-1 (%)")
    ax_loss.set(title=f"{name}: loss", xlabel="epoch", ylabel="cross-entropy")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save_fig(fig, path)


def plot_val_loss(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, history in histories.items():
        ax.plot([h["epoch"] for h in history], [h["val_loss"] for h in history], marker=".", label=name)
    ax.set(title="Validation loss of every model", xlabel="epoch", ylabel="cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_reports(artifacts: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Collect every finished checkpoint into results.json/.md and draw the curves."""
    from .train import load_checkpoint

    ckpt_dir = Path(artifacts) / "checkpoints"
    reports = Path(artifacts) / "reports"
    results: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    for name in list_models():
        for sub, key in (("", name), ("trainval", f"{name}+trainval")):
            path = ckpt_dir / sub / f"{name}.pt"
            if not path.exists():
                continue
            ckpt = load_checkpoint(path)
            if not ckpt["complete"]:
                continue
            results[key] = row(ckpt)
            if not sub:
                plot_curves(name, ckpt["history"], reports / f"{name}_curves.png")
                if "val_loss" in ckpt["history"][0] and ckpt["dataset"] == "fashion-mnist":
                    histories[name] = ckpt["history"]
    if histories:
        plot_val_loss(histories, reports / "val_loss_all.png")
    write_atomic(reports / "results.json", json.dumps(results, indent=2) + "\n")
    write_atomic(reports / "results.md", results_markdown(results))
    return results


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.report", description=__doc__)
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    results = write_reports(args.artifacts)
    print(results_markdown(results))


if __name__ == "__main__":
    main()
