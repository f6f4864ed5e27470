"""Images per second of each zoo model: ONNX Runtime session vs PyTorch eager, batch 1, 64, 1024.

The exported ONNX files (`make export`, else exported in-process) and the checkpoints' weights (else
random ones: speed does not depend on them). The session options and thread counts are chosen by
measurement first (`choose_settings`). MACs per image count conv and linear layers (torch's FLOP
counter, halved); the fraction of peak is the best batch's MAC/s over bench.machine's peak.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import warnings
from pathlib import Path
from statistics import median_high
from typing import Any, Callable

from zoo.model import macs_per_image

from .stats import rate, summary

BATCHES = (1, 64, 1024)


def torch_model(name: str, artifacts: Path):
    """The named model with its trained weights when a checkpoint exists; (model, weights source)."""
    from training.checkpoint import build_model, checkpoint_file, load_checkpoint
    from zoo.registry import get_model

    path = checkpoint_file(artifacts, name)
    if path.exists():
        try:
            return build_model(load_checkpoint(path)), str(path)
        except Exception as e:  # a checkpoint being rewritten: speed does not depend on the weights
            return get_model(name).eval(), f"random init ({path}: {type(e).__name__})"
    return get_model(name).eval(), "random init"


def onnx_file(name: str, artifacts: Path, model, tmp: Path) -> tuple[Path, str]:
    """The exported ONNX file of `name`, or an in-process export of `model` when there is none."""
    import torch

    path = artifacts / "onnx" / f"{name}.onnx"
    if path.exists():
        return path, str(path)
    out = tmp / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the same graph (Conv, Relu, AveragePool, Gemm) in a fraction
        # of the time of the dynamo exporter, which matters when every model is exported per run.
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(out), opset_version=18,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    return out, "exported in-process (no make export output)"


# Simplest first (fewer threads, sequential, full graph optimisation): a later setting is chosen
# only when it is clearly faster, on every repetition of the sweep.
ORT_MODES = ("sequential", "parallel")
ORT_LEVELS = ("all", "extended", "basic")
CLEARLY = 0.10   # a later setting's slowest repetition must beat the pick's median by this much


def ort_session(path: Path, intra_op_num_threads: int, execution_mode: str = "sequential",
                graph_optimization_level: str = "all"):
    """A CPU session with the given options, named as in the report (ORT_MODES, ORT_LEVELS)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_num_threads
    so.inter_op_num_threads = intra_op_num_threads if execution_mode == "parallel" else 1
    so.execution_mode = getattr(ort.ExecutionMode, f"ORT_{execution_mode.upper()}")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{graph_optimization_level.upper()}")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _ort_rate(sess, x, seconds: float) -> float:
    feed = {"image": x}
    return rate(lambda: sess.run(None, feed), len(x), seconds)


def _torch_rate(model, x, threads: int, seconds: float) -> float:
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        model(x)  # first call: allocations, dispatch caches
        return rate(lambda: model(x), len(x), seconds)


def _best(rates: dict[Any, list[float]]) -> Any:
    """The first setting (in insertion order, simplest first) unless a later one is clearly faster:
    its slowest repetition beats the pick's median by CLEARLY. A setting that is fast only some of
    the time (two threads on a busy 2-core machine are bimodal) is not picked."""
    pick, *later = rates
    for k in later:
        if min(rates[k]) > (1 + CLEARLY) * median_high(rates[pick]):
            pick = k
    return pick


def _sweep(measure: Callable[[Any], float], settings: list[Any], reps: int) -> dict[Any, list[float]]:
    """Each setting measured `reps` times, interleaved, so a change in machine load hits all alike."""
    rates: dict[Any, list[float]] = {k: [] for k in settings}
    for _ in range(reps):
        for k in settings:
            rates[k].append(measure(k))
    return rates


def choose_settings(path: Path, model, cores: int, seconds: float, reps: int, log=print) -> dict[str, Any]:
    """Measure the ORT session options and thread counts (the sweep repeated `reps` times,
    interleaved); per batch size the simplest setting wins unless another is clearly faster (`_best`)."""
    import numpy as np
    import torch

    threads = sorted({1, cores})
    x = {b: np.random.default_rng(0).standard_normal((b, 1, 28, 28), dtype=np.float32) for b in BATCHES}
    sessions = {}
    for t, mode, level in itertools.product(threads, ORT_MODES, ORT_LEVELS):
        sessions[(t, mode, level)] = ort_session(path, t, mode, level)
        sessions[(t, mode, level)].run(None, {"image": x[1]})
    grid = _sweep(lambda k: _ort_rate(sessions[k], x[1], seconds), list(sessions), reps)
    t1, mode, level = _best(grid)
    ort_cfg = {1: {"intra_op_num_threads": t1, "execution_mode": mode, "graph_optimization_level": level}}
    for b in BATCHES[1:]:
        by_threads = {t: sessions[(t, mode, level)] for t in threads}
        for sess in by_threads.values():
            sess.run(None, {"image": x[b]})  # first run of this shape: allocations
        rates = _sweep(lambda t: _ort_rate(by_threads[t], x[b], seconds), threads, reps)
        ort_cfg[b] = {**ort_cfg[1], "intra_op_num_threads": _best(rates)}
    torch_cfg = {}
    for b in BATCHES:
        xt = torch.from_numpy(x[b])
        rates = _sweep(lambda t: _torch_rate(model, xt, t, seconds), threads, reps)
        torch_cfg[b] = {"threads": _best(rates)}
    sweep = [{"intra_op_num_threads": t, "execution_mode": m, "graph_optimization_level": lv,
              "images_per_s": summary(v)} for (t, m, lv), v in grid.items()]
    log(f"  inference settings: ORT batch 1 {ort_cfg[1]}; ORT threads by batch "
        f"{ {b: c['intra_op_num_threads'] for b, c in ort_cfg.items()} }; torch threads by batch "
        f"{ {b: c['threads'] for b, c in torch_cfg.items()} }")
    return {"ort": {str(b): c for b, c in ort_cfg.items()}, "torch": {str(b): c for b, c in torch_cfg.items()},
            "ort_batch1_sweep_baseline": sweep}


def run(artifacts: str | os.PathLike, quick: bool, models: list[str] | None = None,
        peak_macs_per_s: float | None = None, cores: int | None = None, log=print) -> dict[str, Any]:
    """Per model: ORT and PyTorch images/s by batch size, ratios, MACs per image, fraction of peak."""
    import numpy as np
    import torch

    from zoo.registry import list_models

    artifacts = Path(artifacts)
    models = models or list_models()
    cores = cores or os.cpu_count() or 1
    reps, seconds = (3, 0.1) if quick else (5, 0.4)  # repetitions, and seconds per timed loop
    threads_before = torch.get_num_threads()
    out: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="fashion-zoo-bench-") as tmp:
            files = {}
            for name in models:
                model, weights = torch_model(name, artifacts)
                path, source = onnx_file(name, artifacts, model, Path(tmp))
                files[name] = (model, weights, path, source)
            ref = "baseline" if "baseline" in files else models[0]
            settings = choose_settings(files[ref][2], files[ref][0], cores, seconds, reps, log)
            settings["chosen_on"] = ref
            out["settings"] = settings
            x = {b: np.random.default_rng(1).standard_normal((b, 1, 28, 28), dtype=np.float32) for b in BATCHES}
            for name, (model, weights, path, source) in files.items():
                macs = macs_per_image(model)
                sessions, by_batch = {}, {}  # one session per distinct setting, shared by the batches
                for b in BATCHES:
                    c = settings["ort"][str(b)]
                    key = tuple(sorted(c.items()))
                    if key not in sessions:
                        sessions[key] = ort_session(path, **c)
                        sessions[key].run(None, {"image": x[1]})
                    by_batch[b] = sessions[key]
                ort_r: dict[str, list[float]] = {str(b): [] for b in BATCHES}
                torch_r: dict[str, list[float]] = {str(b): [] for b in BATCHES}
                for b, sess in by_batch.items():
                    xt = torch.from_numpy(x[b])
                    for _ in range(reps):  # interleaved: both runtimes see the same machine load
                        ort_r[str(b)].append(_ort_rate(sess, x[b], seconds))
                        torch_r[str(b)].append(_torch_rate(model, xt, settings["torch"][str(b)]["threads"], seconds))
                ort_s = {b: summary(v) for b, v in ort_r.items()}
                torch_s = {b: summary(v) for b, v in torch_r.items()}
                best_b = max(ort_s, key=lambda b: ort_s[b]["median"])
                best_t = max(torch_s, key=lambda b: torch_s[b]["median"])
                row: dict[str, Any] = {
                    "onnx": source, "torch_weights": weights,
                    "macs_per_image": macs,
                    "ort_images_per_s": ort_s,
                    "torch_images_per_s": torch_s,
                    "ort_vs_torch": {b: summary(a / t for a, t in zip(ort_r[b], torch_r[b])) for b in ort_r},
                    "ort_best_batch": int(best_b),
                    "torch_best_batch": int(best_t),
                }
                row["ort_vs_torch_bs1"] = row["ort_vs_torch"]["1"]
                if peak_macs_per_s:
                    row["ort_fraction_of_peak"] = round(ort_s[best_b]["median"] * macs / peak_macs_per_s, 4)
                    row["torch_fraction_of_peak"] = round(torch_s[best_t]["median"] * macs / peak_macs_per_s, 4)
                out[name] = row
                log(f"  inference {name}: ORT bs1 {ort_s['1']['median']:,.0f} img/s, torch bs1 "
                    f"{torch_s['1']['median']:,.0f} img/s ({row['ort_vs_torch_bs1']['median']:.1f}x); "
                    f"best ORT {ort_s[best_b]['median']:,.0f} img/s at batch {best_b}")
    finally:
        torch.set_num_threads(threads_before)
    return out
