"""Assemble `ensemble` from the finished Fashion-MNIST models; nothing is trained.

    python -m training.ensemble --artifacts artifacts --data-dir data   # part of `make train-all`

Members are chosen by greedy forward selection on the validation split (Caruana et al., 2004) among
the served train-split checkpoints, never the train+validation retrain (it has seen that split).
Writes <artifacts>/checkpoints/ensemble.pt in training.train's checkpoint format, the same bytes for
the same members; run again, it does nothing while the candidates' weights are unchanged.
docs/ensemble-auto.md describes the method and the checkpoint.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

import torch

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.model import log_mean_probability
from zoo.registry import (assembled_models, default_preprocess, ensemble_candidates, ensemble_kwargs, get_entry,
                          get_model)

from . import portable
from .checkpoint import (build_model, checkpoint_file, checkpoints_dir, finished_checkpoints, load_checkpoint,
                         make_checkpoint, save_atomic, weights_sha256)
from .config import parse_bool
from .data import Split
from .metrics import evaluate, per_class_accuracy, predict

METHOD = "greedy forward selection on validation top-1 of the mean softmax, no repeats"


@torch.inference_mode()
def log_probs(model: torch.nn.Module, split: Split, batch_size: int = 1000) -> torch.Tensor:
    """log-softmax of `model` (eval mode) on every image of `split`, in batches as metrics.evaluate runs."""
    model.eval()
    return torch.cat([model(split.x[i:i + batch_size]).log_softmax(dim=1) for i in range(0, len(split), batch_size)])


def greedy_select(candidates: dict[str, torch.Tensor], y: torch.Tensor) -> tuple[list[str], list[dict[str, Any]]]:
    """Greedy forward selection: (members in the order chosen, the trace: after each addition the
    member added and the validation top-1 of the mean probability). `candidates` maps each name
    to its log-softmax on the validation images `y`; ties go to the first in `candidates`' order."""
    chosen: list[str] = []
    trace: list[dict[str, Any]] = []
    best = -1.0
    while len(chosen) < len(candidates):
        scores = {}
        for name, lp in candidates.items():
            if name not in chosen:
                pred = log_mean_probability([candidates[n] for n in chosen] + [lp]).argmax(dim=1)
                scores[name] = int((pred == y).sum()) / len(y)
        name = max(scores, key=scores.get)  # ties: the first
        if scores[name] <= best:
            break
        chosen.append(name)
        best = scores[name]
        trace.append({"added": name, "val_acc": best, "members": len(chosen)})
    return chosen, trace


def candidate_checkpoints(artifacts: str | os.PathLike, name: str) -> dict[str, dict[str, Any]]:
    """The finished checkpoint of every candidate member, by name; ZooError naming every missing one."""
    out: dict[str, dict[str, Any]] = {}
    missing = []
    for member in ensemble_candidates(name):
        path = checkpoint_file(artifacts, member)
        ckpt = load_checkpoint(path) if path.exists() else None
        if ckpt is None or not ckpt["complete"]:
            missing.append(member if ckpt is None else f"{member} (unfinished)")
        else:
            out[member] = ckpt
    if missing:
        raise ZooError(f"{name} is assembled from finished checkpoints of {', '.join(ensemble_candidates(name))}; "
                       f"missing in {checkpoints_dir(artifacts)}: {', '.join(missing)}. Train them first with `make train-all` "
                       f"(or `make train MODEL=...`)")
    splits = {(c["config"]["val_fraction"], c["config"]["split_seed"]) for c in out.values()}
    if len(splits) > 1:
        raise ZooError(f"{name}: its candidates were trained on different validation splits "
                       f"(val_fraction, split_seed: {sorted(splits)}); retrain them with one setting")
    return out


def identity(name: str, members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What decides an assembled checkpoint: the method, the validation split and every candidate's weights."""
    first = next(iter(members.values()))["config"]
    out = {"model": name, "members": get_entry(name).members, "method": METHOD,
           "val_fraction": first["val_fraction"], "split_seed": first["split_seed"], "threads": 1,
           "candidates": {n: weights_sha256(c["state_dict"]) for n, c in members.items()}}
    if all(c["config"].get("portable") for c in members.values()):
        out["portable"] = True  # scored in the mode its candidates were trained in
    return out


def stale_reason(ckpt: dict[str, Any], members: dict[str, dict[str, Any]]) -> str | None:
    """Why an assembled checkpoint is not what its candidates' checkpoints (`candidate_checkpoints`)
    make today (None: it is)."""
    want = identity(ckpt["name"], members)
    have = ckpt.get("config_identity", {})
    if not ckpt.get("complete"):
        return "it is unfinished"
    changed = [n for n in want["candidates"] if have.get("candidates", {}).get(n) != want["candidates"][n]]
    if changed:
        return f"the weights of {', '.join(changed)} changed"
    if have != want:
        return "its selection settings differ"
    return None


def build(artifacts: str | os.PathLike, data_dir: str | os.PathLike, name: str = "ensemble",
          force: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Assemble `name` from the finished checkpoints in `artifacts` (or keep it when up to date);
    returns its checkpoint dict."""
    from .tqdm_fixes import Bar as tqdm  # tqdm, safe to interrupt while a bar is made

    say = (lambda *_: None) if quiet else functools.partial(print, file=sys.stderr)
    entry = get_entry(name)
    if entry.members != "greedy":
        raise ValueError(f"{name!r} is not an assembled model; choose one of: {', '.join(assembled_models())}")
    assert entry.dataset == "fashion-mnist", f"{name}: greedy selection needs a validation split"
    path = checkpoint_file(artifacts, name)
    members = candidate_checkpoints(artifacts, name)
    ident = identity(name, members)
    if path.exists() and not force:
        why = stale_reason(old := load_checkpoint(path), members)
        if why is None:
            say(f"[{name}] up to date (its candidates are unchanged): {path}; --force 1 assembles again")
            return old
        say(f"[{name}] assembling again ({why}): {path}")

    from .data.fashion_mnist import load_fashion_mnist

    if ident.get("portable"):
        portable.apply()
    splits = load_fashion_mnist(data_dir, ident["val_fraction"], ident["split_seed"])
    val = splits["val"]
    threads = torch.get_num_threads()
    torch.set_num_threads(ident["threads"])  # the members were scored with one thread: the same figures
    try:
        scores: dict[str, torch.Tensor] = {}
        with tqdm(members.items(), desc=f"{name}: scoring candidates", unit="model", disable=quiet,
                  leave=False, file=sys.stderr) as bar:
            for member, ckpt in bar:
                scores[member] = log_probs(build_model(ckpt), val)
                correct = int((scores[member].argmax(1) == val.y).sum())
                stored = ckpt["metrics"]["val_acc"]
                if stored is not None and abs(round(stored * len(val)) - correct) > 1:
                    raise ZooError(f"{member} scored {100 * stored:.2f}% on its validation split but "
                                   f"{100 * correct / len(val):.2f}% on the one in {data_dir}: it was trained "
                                   f"on other data; point --data-dir at that data, or retrain it")
        chosen, trace = greedy_select(scores, val.y)
        for step in trace:
            say(f"[{name}] + {step['added']}: validation top-1 {100 * step['val_acc']:.2f}% "
                f"with {step['members']} member(s)")
        say(f"[{name}] no other candidate improves it: members {', '.join(chosen)}")
        kwargs = ensemble_kwargs(chosen)
        model = get_model(name, **kwargs)
        for module, member in zip(model.members, chosen):
            module.load_state_dict(members[member]["state_dict"])
        model.eval()
        metrics: dict[str, Any] = {}
        for split in ("train", "val", "test"):
            metrics[f"{split}_loss"], metrics[f"{split}_acc"] = evaluate(model, splits[split])
        metrics["test_per_class"] = per_class_accuracy(predict(model, splits["test"]), splits["test"].y)
    finally:
        torch.set_num_threads(threads)
    preprocess = default_preprocess(name)
    if any(members[m]["preprocess"] != preprocess for m in chosen):
        raise ZooError(f"{name}: its members were trained with another preprocessing than the registry's; retrain them")
    config = {"model": name, "members": entry.members, "data_dir": str(data_dir), "artifacts": str(artifacts),
              "val_fraction": ident["val_fraction"], "split_seed": ident["split_seed"],
              "threads": ident["threads"], "portable": bool(ident.get("portable"))}
    ckpt = make_checkpoint(
        model, name=name, kwargs=kwargs, metrics=metrics,
        history=[],  # not trained: no epochs, no curve
        config=config, config_identity=ident, preprocess=preprocess, epoch=0, complete=True,
        seconds=0.0,  # nothing timed, so the same members give the same bytes
        assembled={
            "method": METHOD,
            "members": chosen,
            "selection": trace,
            "candidates": {n: {"val_acc": int((s.argmax(1) == val.y).sum()) / len(val)} for n, s in scores.items()},
        })
    save_atomic(ckpt, path)
    say(f"[{name}] assembled {'+'.join(chosen)}: train {metrics['train_acc']:.4f} val "
        f"{metrics['val_acc']:.4f} test {metrics['test_acc']:.4f} -> {path}")
    return ckpt


def build_all(artifacts: str | os.PathLike, data_dir: str | os.PathLike, force: bool = False,
              quiet: bool = False) -> dict[str, dict[str, Any]]:
    """Every assembled registry model (`make train-all` calls this once the trained models are done)."""
    return {n: build(artifacts, data_dir, n, force=force, quiet=quiet) for n in assembled_models()}


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.ensemble", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default="artifacts", help="where the finished checkpoints are (default: artifacts)")
    parser.add_argument("--data-dir", default="data", help="Fashion-MNIST (default: data)")
    parser.add_argument("--model", default=None, help="one assembled model (default: all of them)")
    parser.add_argument("--force", type=parse_bool, default=False, help="assemble even when up to date (default: 0)")
    args = parser.parse_args()
    if any(c["config"].get("portable") for _, _, c in finished_checkpoints(args.artifacts)):
        portable.reexec("training.ensemble")  # candidates trained in the portable mode are scored in it
    for name in [args.model] if args.model else assembled_models():
        build(args.artifacts, args.data_dir, name, force=args.force)


if __name__ == "__main__":
    main()
