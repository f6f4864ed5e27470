"""Publish the trained zoo into `weights/`: `python -m release.publish` (what `make publish-weights` runs).

    make train-all export       # trains and exports every registry model with the full recipe
    make publish-weights        # copies them into weights/ (then commit weights/)

Per registry model it ships the slim state_dict (weights only) as `<name>.pt`, the ONNX file, and
one `manifest.json`: the export's, each entry with both files' sha256, the LeNet5 keyword arguments,
MACs and training config, plus the date, source commit and command. Anything but what `make
train-all export` made with the full recipe from committed code is refused, in one line naming
every problem (docs/export.md lists them); parity is checked again on the very files that ship.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.fileio import write_atomic
from zoo.manifest import MANIFEST, manifest_text, read_json, sha256
from zoo.pretrained import shipped_manifest, weights_dir
from zoo.registry import default_preprocess, describe, get_entry, list_models

REPO = Path(__file__).resolve().parents[1]
# The code whose uncommitted changes could make the weights differ from the recorded commit's.
CODE_PATHS = ("zoo", "training", "export", "release", "pyproject.toml")
# What decides the weights a run trains (a change here after a checkpoint was written is worth a note).
TRAINING_CODE = ("zoo/registry.py", "zoo/model.py", "zoo/spec.py", "training")
COMMAND = "make train-all export publish-weights PORTABLE=1"
# Per-run settings that do not change the weights (and local paths that say nothing to a user).
LOCAL_CONFIG = ("artifacts", "force")


def state_dict_bytes(ckpt: dict[str, Any]) -> bytes:
    """The slim state_dict as it ships: the registry architecture's own state_dict, loaded with the
    checkpoint's weights, saved by torch (the same weights give the same bytes)."""
    import torch

    from training.checkpoint import build_model

    buf = io.BytesIO()
    torch.save(build_model(ckpt).state_dict(), buf)
    return buf.getvalue()


def recipe_problems(name: str, ckpt: dict[str, Any], artifacts: str | os.PathLike | None = None) -> list[str]:
    """How a checkpoint falls short of the registry's full recipe (empty when it does not); an
    assembled model's, of being assembled from the checkpoints beside it in `artifacts`."""
    from training.config import TrainConfig

    if get_entry(name).members is not None:
        return assembled_problems(name, ckpt, artifacts)
    want = TrainConfig.release(name)
    cfg = ckpt.get("config", {})
    if not ckpt.get("complete"):
        return [f"unfinished (epoch {ckpt.get('epoch')} of {cfg.get('epochs')}; run `make train-all` to finish it)"]
    problems = []
    if ckpt["epoch"] != want.epochs:
        problems.append(f"{'short-epoch' if ckpt['epoch'] < want.epochs else 'not the recipe'}: "
                        f"{ckpt['epoch']} epochs, the recipe is {want.epochs}")
    if not cfg.get("portable"):
        problems.append("trained in the native mode, whose weights depend on the processor; the "
                        "weights that ship are trained in the portable mode (`make train-all PORTABLE=1`)")
    off = [f"{k}={cfg.get(k)!r} (recipe {v!r})" for k, v in want.identity().items()
           if cfg.get(k) != v and k != "portable"]
    if off:
        problems.append("not the recipe: " + ", ".join(off))
    if json.dumps(ckpt.get("kwargs"), sort_keys=True) != json.dumps(get_entry(name).kwargs, sort_keys=True):
        problems.append(f"trained as LeNet5(**{ckpt.get('kwargs')}), the registry now says "
                        f"LeNet5(**{get_entry(name).kwargs})")
    if ckpt.get("preprocess") != default_preprocess(name):
        problems.append("trained with another preprocessing than the registry's")
    return problems


def assembled_problems(name: str, ckpt: dict[str, Any], artifacts: str | os.PathLike | None) -> list[str]:
    """How an assembled checkpoint falls short: unfinished, members of another architecture or
    preprocessing than the registry's, or assembled from other weights than the candidates' in
    `artifacts` (their own recipe is checked as theirs)."""
    from training.ensemble import candidate_checkpoints, stale_reason

    again = "run `python -m training.ensemble` (part of `make train-all`)"
    if not ckpt.get("complete"):
        return [f"unfinished; {again}"]
    problems = []
    for member, kwargs in ckpt["kwargs"]["members"].items():
        if json.dumps(kwargs, sort_keys=True) != json.dumps(get_entry(member).kwargs, sort_keys=True):
            problems.append(f"member {member} is LeNet5(**{kwargs}), the registry now says "
                            f"LeNet5(**{get_entry(member).kwargs}); {again}")
    if ckpt.get("preprocess") != default_preprocess(name):
        problems.append("assembled with another preprocessing than the registry's")
    if artifacts is not None:
        try:
            why = stale_reason(ckpt, candidate_checkpoints(artifacts, name))
        except ZooError as e:
            why = str(e)
        if why:
            problems.append(f"not assembled from the checkpoints beside it ({why}); {again}")
    return problems


def seed_spreads(artifacts: Path, models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model, the standard deviation over seeds of each accuracy (fractions, like "metrics") that
    `make study` measured at the batch size the model was trained with: what `make verify-weights`
    allows an accuracy retrained on another processor. Empty without a study in `artifacts`."""
    path = artifacts / "reports" / "study.json"
    if not path.exists():
        return {}
    study = json.loads(path.read_text())
    out = {}
    for row in study["rows"]:
        entry = models.get(row["model"])
        if entry and entry["config"].get("batch_size") == row["batch_size"] and len(row["seeds"]) > 1:
            out[row["model"]] = {**{f"{k}_acc": round(row[f"{k}_sd"] / 100, 6) for k in ("train", "val", "test")},
                                 "seeds": len(row["seeds"]), "mode": study.get("mode")}
    return out


def dirty_code(repo: Path = REPO, paths: tuple[str, ...] = CODE_PATHS) -> list[str]:
    """Uncommitted (or untracked) files under `paths` of the git checkout `repo`."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *paths],
                         cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise ZooError(f"cannot ask git about {repo} ({out.stderr.strip() or 'git failed'}); "
                       f"publish from a git checkout, whose commit the manifest records")
    return [line[3:] for line in out.stdout.splitlines()]


def trained_before_code_change(artifacts: Path, names: list[str], repo: Path = REPO) -> tuple[str, list[str]]:
    """(the last commit that changed the training code, the models whose checkpoints are older)."""
    out = subprocess.run(["git", "log", "-1", "--format=%h %ct", "--", *TRAINING_CODE],
                         cwd=repo, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return "", []
    from training.checkpoint import checkpoint_file

    commit, when = out.stdout.split()
    return commit, [n for n in names if checkpoint_file(artifacts, n).stat().st_mtime < int(when)]


def source_commit(repo: Path = REPO) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise ZooError(f"cannot read the commit of {repo}; publish from a git checkout")
    return out.stdout.strip()


def collect(artifacts: str | os.PathLike, strict: bool = True,
            draft: bool = False) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and files (name -> bytes) that would ship from `artifacts`; raises ZooError
    naming every problem. `strict=False` (a retrain to compare, tests on tiny models) skips the
    models never trained and the recipe, real-data and clean-tree checks, never the parity or file
    checks. `draft=True` publishes despite uncommitted code and without the models that fail a
    check, and says so in the manifest's "draft" entry (the tests fail on a draft)."""
    from export.export import parity_images
    from export.parity import check_parity, parity_problems
    from training.checkpoint import build_model, checkpoint_file, load_checkpoint

    artifacts = Path(artifacts)
    manifest_path = artifacts / MANIFEST
    if not manifest_path.exists():
        raise ZooError(f"no export in {artifacts} ({manifest_path} is missing); "
                       f"run `make train-all export` first")
    exported = read_json(artifacts, str(manifest_path))
    problems: dict[str, list[str]] = {}
    left_out: dict[str, str] = {}
    files: dict[str, bytes] = {}
    models: dict[str, dict[str, Any]] = {}
    cache: dict = {}  # parity images, shared by the models trained on the same data
    for name in list_models():
        path = checkpoint_file(artifacts, name)
        entry = exported["models"].get(name)
        if not path.exists():
            if strict:  # every registry model ships; a partial zoo is for tests only
                problems[name] = ["not trained (run `make train-all export`)"]
            continue
        try:
            ckpt = load_checkpoint(path)
        except ZooError as e:
            problems[name] = [str(e)]
            continue
        mine = recipe_problems(name, ckpt, artifacts) if strict else ([] if ckpt.get("complete") else ["unfinished"])
        if entry is None or not ckpt.get("complete"):  # an unfinished one has its problem already
            problems[name] = mine if not ckpt.get("complete") else [*mine, "not exported (run `make export`)"]
            continue
        onnx_path = artifacts / "onnx" / entry["onnx"]
        onnx_bytes = onnx_path.read_bytes() if onnx_path.exists() else b""
        metrics = {k: ckpt["metrics"].get(k) for k in entry["metrics"]}
        if sha256(onnx_bytes) != entry["sha256"] or metrics != entry["metrics"] or ckpt["epoch"] != entry["epochs"]:
            mine.append(f"{onnx_path} is not the export of {path} (run `make export`)")
        else:
            # Parity again, on the bytes that ship, against the checkpoint that ships.
            images, what = parity_images(ckpt, None, None, cache=cache)
            parity = check_parity(build_model(ckpt), onnx_path, images)
            mine += [f"parity failed: {p}" for p in parity_problems(parity)]
            if strict and what.startswith(("random", "synthetic")):
                mine.append(f"parity ran on {what} images: trained on other than the real data")
        if mine:
            problems[name] = mine
            continue
        weights_bytes = state_dict_bytes(ckpt)
        files[f"{name}.pt"], files[entry["onnx"]] = weights_bytes, onnx_bytes
        config = {k: v for k, v in ckpt["config"].items() if k not in LOCAL_CONFIG}
        members = ckpt["kwargs"] if get_entry(name).members is not None else {}  # what an assembled model is made of
        models[name] = {**entry, "state_dict": f"{name}.pt", "state_dict_sha256": sha256(weights_bytes),
                        "kwargs": ckpt["kwargs"], "macs": describe(name, **members)["macs"], "config": config}
    for name, spread in seed_spreads(artifacts, models).items():
        models[name]["seed_spread"] = spread
    dirty = dirty_code() if strict else []
    if problems and draft and models:
        left_out = {name: ", ".join(p) for name, p in problems.items()}
        problems = {}
    if dirty and not draft:
        listed = ", ".join(dirty[:6]) + (f" and {len(dirty) - 6} more" if len(dirty) > 6 else "")
        problems["source"] = [f"uncommitted changes to the code that trains the models ({listed}): "
                              f"commit them, retrain if they change training, and publish again"]
    if problems:
        raise ZooError("refusing to publish weights/: " + "; ".join(
            f"{name}: {', '.join(p)}" for name, p in problems.items()))
    manifest = {**{k: v for k, v in exported.items() if k != "models"},
                "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source_commit": source_commit() if strict else None, "command": COMMAND}
    if set(models) != set(exported["models"]):  # the default and auto among what ships
        from zoo.auto import auto_entry, best_fashion_mnist
        from zoo.registry import photo_models

        manifest.update(default=best_fashion_mnist(models), auto=auto_entry(models, photo_models()))
    if draft:
        manifest["draft"] = {"uncommitted": dirty, "left_out": left_out}
    manifest["models"] = models
    return manifest, files


def _same_zoo(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for when and from which commit it was made."""
    skip = ("created", "published", "source_commit")
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))  # as written: tuples become lists
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def write(manifest: dict[str, Any], files: dict[str, bytes], out: str | os.PathLike) -> bool:
    """Put `files`, what other tools check them with (release/formats.py) and `manifest` in `out`
    (the manifest last); remove the model files no longer shipped. Returns False, touching nothing,
    when `out` already holds exactly this zoo."""
    from . import formats

    out = Path(out)
    if _same_zoo(shipped_manifest(out), manifest) and all(
            (out / f).exists() and (out / f).read_bytes() == data for f, data in files.items()):
        return False
    generated = formats.build(manifest, files)  # test data first: a missing dataset touches nothing
    out.mkdir(parents=True, exist_ok=True)
    for filename, data in files.items():
        write_atomic(out / filename, data)
    for stale in [*out.glob("*.pt"), *out.glob("*.onnx")]:
        if stale.name not in files:
            stale.unlink()
    formats.write(out, manifest, generated)
    write_atomic(out / MANIFEST, manifest_text(manifest))
    return True


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m release.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", default="artifacts", help="what `make train-all export` wrote")
    parser.add_argument("--out", default=None, help="default: the weights/ package")
    parser.add_argument("--draft", action="store_true",
                        help="publish despite uncommitted code and without the models that fail a "
                             "check, as the manifest's draft entry says (the tests fail on a draft)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else weights_dir()
    manifest, files = collect(args.artifacts, draft=args.draft)
    if not write(manifest, files, out):
        old = shipped_manifest(out)
        print(f"{out} already holds these {len(files) // 2} models (published {old.get('published')}, "
              f"commit {str(old.get('source_commit'))[:12]}); nothing changed", file=sys.stderr)
        return
    for name, e in manifest["models"].items():
        m = e["metrics"]
        acc = " ".join(f"{k[:-4]} {100 * m[k]:.2f}" for k in ("val_acc", "test_acc") if m.get(k) is not None)
        print(f"[{name}] {e['state_dict']} + {e['onnx']}: {acc}", file=sys.stderr)
    if "draft" in manifest:
        d = manifest["draft"]
        print(f"a DRAFT (the tests fail on it): left out {d['left_out'] or 'nothing'}; "
              f"{len(d['uncommitted'])} uncommitted file(s) in the code that trains", file=sys.stderr)
    commit, older = trained_before_code_change(Path(args.artifacts), list(manifest["models"]))
    if older:
        print(f"note: {', '.join(older)} were trained before commit {commit} changed the training code; "
              f"`make verify-weights` shows whether this commit trains them bit for bit "
              f"(`make train-all export publish-weights FORCE=1` retrains them)", file=sys.stderr)
    size = sum(len(d) for d in files.values()) / 2**20
    shown = os.path.relpath(out) if not os.path.relpath(out).startswith("..") else out
    print(f"published {len(manifest['models'])} models ({size:.1f} MiB) into {out} from commit "
          f"{manifest['source_commit'][:12]}; commit them with `git add {shown} && git commit`",
          file=sys.stderr)


if __name__ == "__main__":
    main()
