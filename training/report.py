"""Reports from checkpoints: results.json, results.md (beside the study's numbers) and curves.

    python -m training.report --artifacts artifacts
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zoo.cli import ArgumentParser, cli, pct, table
from zoo.fileio import replacing, write_atomic
from zoo.registry import assembled_models
from zoo.spec import CLASSES

# The study's published top-1 (percent): train / validation, and test for its final comparison.
STUDY = {
    "baseline": (95.32, 90.98), "dropout": (89.73, 89.81), "batchnorm": (94.8, 90.675),
    "leakyrelu": (95.34, 90.575), "kernelsize": (93.33, 90.075), "lesskernelsize": (95.035, 90.20),
    "numfilters": (96.64, 91.61), "kaggle": (95.38, None),
}
STUDY_TEST = {"numfilters": 90.27, "numfilters+trainval": 90.94, "kaggle": 91.76}
AUTO_SETS = ("fashion-mnist", "fashion-mnist-all", "kaggle")  # the image sets of reports/auto.json


def row(ckpt: dict[str, Any]) -> dict[str, Any]:
    m = ckpt["metrics"]
    # A Kaggle model's per-epoch 'validation' is its held-out test split: it has no validation accuracy.
    val_acc = None if ckpt["dataset"] == "kaggle" else m["val_acc"]
    out = {
        "params": ckpt["params"],
        "train_acc": m["train_acc"], "val_acc": val_acc, "test_acc": m["test_acc"],
        "epochs": ckpt["epoch"], "seconds": round(ckpt["seconds"], 1),
        "seconds_per_epoch": round(ckpt["seconds"] / ckpt["epoch"], 2) if ckpt["epoch"] else None,
        "dataset": ckpt["dataset"],
    }
    if "assembled" in ckpt:  # not trained: its members and how they were chosen instead of epochs
        a = ckpt["assembled"]
        out.update(epochs=None, seconds=None, members=a["members"], selection=a["selection"])
    if ckpt["config"].get("trainval"):
        out["retrain_of"] = ckpt["name"]
    out.update({key: m[key] for key in ("test_per_class", "test_confusion", "cross_domain") if key in m})
    if "kaggle_data" in ckpt:
        out["data"] = ckpt["kaggle_data"]
    return out


def results_markdown(results: dict[str, dict[str, Any]], auto: dict[str, Any] | None = None) -> str:
    lines = [
        "# Results", "",
        "Top-1 accuracy (%), ours beside the study's. Train accuracy is measured during the last",
        "epoch (in training mode, as the study did), validation on the fixed 12,000-image split,",
        "test on the 10,000 Fashion-MNIST test images (for the photo models: Kaggle's held-out 20%).",
        "An assembled model is not trained: its train accuracy is measured in eval mode.", "",
    ]
    rows = []
    for name, r in results.items():
        study = (None, None) if "retrain_of" in r else STUDY.get(name, (None, None))
        epochs, seconds = (("assembled", "–") if "members" in r else (r["epochs"], f"{r['seconds']:.0f}"))
        rows.append([f"`{name}`", f"{r['params']:,}", *(pct(r[k]) for k in ("train_acc", "val_acc", "test_acc")),
                     *("–" if v is None else f"{v:.2f}" for v in study), epochs, seconds])
    lines += table(["model", "params", "train", "val", "test", "study train", "study val", "epochs", "seconds"], rows)
    for name in [n for n, r in results.items() if "retrain_of" in r]:
        base = results[name]["retrain_of"]
        lines += ["", f"## Train vs train+validation ({base}, best by validation accuracy)", "",
                  *table(["model", "trained on", "test (ours)", "test (study, numfilters)"],
                         [[f"`{base}`", "48,000 train", pct(results[base]["test_acc"]),
                           f"{STUDY_TEST['numfilters']:.2f}"],
                          [f"`{name}`", "60,000 train+val", pct(results[name]["test_acc"]),
                           f"{STUDY_TEST['numfilters+trainval']:.2f}"]], "llr")]
    lines += ensemble_markdown(results) + kaggle_markdown(results) + auto_markdown(auto)
    total = sum(r["seconds"] or 0 for r in results.values())
    lines += ["", f"Training time, all models: {total:.0f} s of compute (see `seconds` per model)."]
    return "\n".join(lines) + "\n"


def ensemble_markdown(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each assembled model: its members and the validation top-1 after each was added."""
    lines: list[str] = []
    for name, r in results.items():
        if "members" not in r:
            continue
        lines += [
            "", f"## `{name}`: assembled, not trained", "",
            f"The mean softmax probability of {', '.join(f'`{m}`' for m in r['members'])}, chosen by greedy "
            "forward selection on the validation split: start with no member, add the model that most improves "
            "the validation top-1 of the mean probability, stop when none improves it "
            "(`python -m training.ensemble`).", "",
        ]
        rows = [[i, f"`{step['added']}`", pct(step["val_acc"]), *(pct(results.get(step["added"], {}).get(k))
                                                                   for k in ("val_acc", "test_acc"))]
                for i, step in enumerate(r["selection"], 1)]
        rows.append(["", f"**`{name}`**", f"**{pct(r['val_acc'])}**", "", f"**{pct(r['test_acc'])}**"])
        lines += table(["step", "member added", "val top-1 of the mean", "its own val", "its own test"], rows, "rlr")
    return lines


def balanced_accuracy(per_class: dict[str, float | None]) -> float | None:
    """The mean of the per-class accuracies over the classes that have test images."""
    values = [v for v in per_class.values() if v is not None]
    return sum(values) / len(values) if values else None


def confusion_pairs(matrices: list[list[list[int]]], top: int = 8) -> list[tuple[int, int]]:
    """The (true, predicted) off-diagonal cells with the most mistakes in any of `matrices`, most first."""
    cells = {(i, j): max(m[i][j] for m in matrices) for i in range(len(CLASSES)) for j in range(len(CLASSES)) if i != j}
    return [ij for ij, worst in sorted(cells.items(), key=lambda kv: -kv[1]) if worst > 0][:top]


def kaggle_markdown(results: dict[str, dict[str, Any]]) -> list[str]:
    """The photo-trained models per class, and every Fashion-MNIST model on the same Kaggle test split."""
    lines: list[str] = []
    photos = {n: r for n, r in results.items() if r["dataset"] == "kaggle"}
    if photos:
        first = next(iter(photos.values()))
        confusion = first.get("test_confusion")
        n = [sum(r) for r in confusion] if confusion else None
        names = " and ".join(f"`{name}`" for name in photos)
        lines += [
            "", f"## {names}: Kaggle product photos", "",
            "Test top-1 on a fixed, stratified 20% of the usable photos"
            + (f" ({sum(n):,} images)" if n else "") + ": "
            + ", ".join(f"`{name}` {pct(r['test_acc'])}%" for name, r in photos.items())
            + f"; the study reported {STUDY_TEST['kaggle']:.2f}% for `kaggle` on the full dataset. That 20% "
            "is these models' test set and their per-epoch curve: they have no separate validation accuracy.", "",
        ]
        rows = [[c, f"{n[i]:,}" if n else "–", *(pct(r.get("test_per_class", {}).get(c)) for r in photos.values())]
                for i, c in enumerate(CLASSES)]
        rows.append(["**balanced** (mean over the classes with photos)", "",
                     *(pct(balanced_accuracy(r.get("test_per_class", {}))) for r in photos.values())])
        lines += table(["class", "test images", *(f"`{name}`" for name in photos)], rows)
        drawn = [name for name, r in photos.items() if r.get("test_confusion")]
        if drawn:
            matrices = [photos[name]["test_confusion"] for name in drawn]
            lines += ["", "Where the photos go wrong (test photos, true → predicted, the pairs with the most "
                          "mistakes in any model):", "",
                      *table(["true → predicted", *(f"`{name}`" for name in drawn)],
                             ([f"{CLASSES[i]} → {CLASSES[j]}", *(m[i][j] for m in matrices)]
                              for i, j in confusion_pairs(matrices)))]
            lines += ["", "Confusion matrices: " + ", ".join(f"`{name}_confusion.png`" for name in drawn) + "."]
        if "data" in first:
            d = first["data"]
            lines += ["", f"Data: {d['rows']:,} rows in styles.csv, {d['repaired']} repaired malformed rows, "
                          f"{d['malformed']} malformed rows skipped, {d['unmapped']:,} rows of "
                          f"{len(d['unmapped_types'])} unmapped article types, {d['missing']:,} missing "
                          f"and {d['unreadable']} unreadable images; {d['images']:,} usable "
                          f"({d['train']:,} train, {d['test']:,} test)."]
    cross = {n: r for n, r in results.items() if "cross_domain" in r}
    if cross:
        any_cd = next(iter(cross.values()))["cross_domain"]
        lines += [
            "", "## Cross-domain: every model on the Kaggle test split", "",
            f"Top-1 (%) on the same {any_cd['images']:,} held-out Kaggle photos, each model with the "
            "preprocessing its checkpoint carries (what the service applies to an upload); \"own test\" is "
            "the model's own test set (Fashion-MNIST's 10,000 images, or Kaggle's for the photo models).", "",
        ]
        rows = [(n, r["test_acc"], r["cross_domain"]["test_acc"], r["cross_domain"]["test_per_class"])
                for n, r in cross.items()]
        rows += [(n, r["test_acc"], r["test_acc"], r.get("test_per_class", {})) for n, r in photos.items()]
        lines += table(["model", "own test", "Kaggle test", *CLASSES],
                       ([f"`{name}`", pct(own), pct(acc), *(pct(per_class.get(c)) for c in CLASSES)]
                        for name, own, acc, per_class in rows))
    return lines


def best_single(single_acc: dict[str, float]) -> str:
    """The best single model of {model: top-1}: a trained one (an assembled model averages several
    of them), unless there is none."""
    singles = {n: a for n, a in single_acc.items() if n not in assembled_models()} or single_acc
    return max(singles, key=singles.get)


def auto_markdown(auto: dict[str, Any] | None) -> list[str]:
    """model=auto (the service's default) against the single models, from reports/auto.json."""
    if not auto:
        return []
    models = auto["auto"]["models"]
    lines = [
        "", "## `model=auto`: the service's default", "",
        f"Rule: {auto['auto']['rule']['description']}. Here Fashion-MNIST-style images go to "
        f"`{models['fashion-mnist']}`, photos to `{models['photo']}`. Each image is sent as the service "
        "receives it, routed, preprocessed and classified as the service does "
        "(`python -m training.auto_eval`).", "",
    ]
    rows = []
    for r in (auto[key] for key in AUTO_SETS if key in auto):
        best, acc = best_single(r["single_acc"]), r["single_acc"]
        rows.append([r["data"], pct(r["auto_acc"]), ", ".join(f"`{n}` {c:,}" for n, c in r["routed"].items()),
                     f"`{best}` {pct(acc[best])} ({100 * (r['auto_acc'] - acc[best]):+.2f} points)",
                     ", ".join(f"`{n}` {pct(a)}" for n, a in r["single_acc"].items())])
    return lines + table(["images", "`auto`", "routed", "best single model", "every model"], rows, "lrl")


def _pyplot():
    """matplotlib.pyplot, drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(name: str, history: list[dict[str, float]], path: Path,
                val_label: str = "validation") -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("val", val_label)):
        if f"{key}_acc" in history[0]:
            ax_acc.plot(epochs, [100 * h[f"{key}_acc"] for h in history], marker="o", label=label)
            ax_loss.plot(epochs, [h[f"{key}_loss"] for h in history], marker="o", label=label)
    ax_acc.set(title=f"{name}: accuracy", xlabel="epoch", ylabel="top-1 (%)")
    ax_loss.set(title=f"{name}: loss", xlabel="epoch", ylabel="cross-entropy")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    _save_fig(fig, path)


def plot_val_loss(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, history in histories.items():
        ax.plot([h["epoch"] for h in history], [h["val_loss"] for h in history], marker=".", label=name)
    ax.set(title="Validation loss of every model", xlabel="epoch", ylabel="cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_fig(fig, path)


def plot_confusion(name: str, confusion: list[list[int]], path: Path) -> None:
    """Counts, true class down and predicted class across, shaded by the share of each row."""
    import numpy as np

    plt = _pyplot()
    counts = np.array(confusion)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(*counts.shape):
        if counts[i, j]:
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ticks = range(len(CLASSES))
    ax.set_xticks(ticks, CLASSES, rotation=45, ha="right")
    ax.set_yticks(ticks, [f"{c} ({n})" for c, n in zip(CLASSES, counts.sum(1))])
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set(title=f"{name}: confusion on its test split (top-1 {100 * accuracy:.2f}%)",
           xlabel="predicted", ylabel="true (test images)")
    _save_fig(fig, path)


def _save_fig(fig: Any, path: Path) -> None:
    try:
        fig.tight_layout()
        with replacing(path, suffix=path.suffix) as tmp:  # savefig picks the format from the name
            fig.savefig(tmp, dpi=100)
    finally:
        _pyplot().close(fig)


def write_reports(artifacts: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Collect every finished checkpoint into results.json/.md and draw the curves."""
    from .checkpoint import finished_checkpoints

    reports = Path(artifacts) / "reports"
    results: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    for key, _, ckpt in finished_checkpoints(artifacts):
        results[key] = row(ckpt)
        name, kaggle = ckpt["name"], ckpt["dataset"] == "kaggle"
        if key != name or not ckpt["history"]:  # the train+validation retrain, an assembled model: no figures
            continue
        plot_curves(name, ckpt["history"], reports / f"{name}_curves.png",
                    f"held-out test ({ckpt['config']['val_fraction']:.0%})" if kaggle else "validation")
        if "test_confusion" in ckpt["metrics"]:
            plot_confusion(name, ckpt["metrics"]["test_confusion"], reports / f"{name}_confusion.png")
        if "val_loss" in ckpt["history"][0] and not kaggle:
            histories[name] = ckpt["history"]
    if histories:
        plot_val_loss(histories, reports / "val_loss_all.png")
    write_atomic(reports / "results.json", json.dumps(results, indent=2) + "\n")
    write_atomic(reports / "results.md", results_markdown(results, read_auto(artifacts)))
    return results


def read_auto(artifacts: str | os.PathLike) -> dict[str, Any] | None:
    """reports/auto.json (written by training.auto_eval), or None."""
    path = Path(artifacts) / "reports" / "auto.json"
    return json.loads(path.read_text()) if path.exists() else None


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.report", description=__doc__)
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    results = write_reports(args.artifacts)
    print(results_markdown(results, read_auto(args.artifacts)))


if __name__ == "__main__":
    main()
