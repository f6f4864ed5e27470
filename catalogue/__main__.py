"""python -m catalogue SRC OUT [--model auto] [--top-k 3] ... (make classify SRC=... OUT=...)"""
from __future__ import annotations

import argparse
import signal
import sys

from service.params import ALL, DEFAULT_TOP_K
from zoo.auto import AUTO
from zoo.cli import ArgumentParser
from zoo.errors import ZooError

from . import job
from .output import Output, metadata
from .sources import IMAGE_EXTENSIONS, find
from .zoos import resolve

EXAMPLES = """examples:
  python -m catalogue photos/ labels/                        a folder, recursively, on local Ray
  python -m catalogue 'photos/**/*.jpg' labels/ --model photo
  python -m catalogue paths.txt labels/ --model all --top-k 5
  RAY_ADDRESS=auto python -m catalogue s3://shop/photos s3://shop/labels   on a running cluster
"""


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m catalogue", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Classify every image of SRC with the zoo on Ray Data; write a "
                                   "Parquet dataset to OUT. A rerun resumes where the last one stopped.")
    p.add_argument("src", metavar="SRC", help=f"a folder (recursive; files {', '.join(IMAGE_EXTENSIONS)}), "
                   "a glob, a text file of paths (.txt), or one image; a local path or a URI (s3://...)")
    p.add_argument("out", metavar="OUT", help="the output folder (a Parquet dataset), local or a URI")
    p.add_argument("--model", default=AUTO, help=f"{AUTO} (the default: the service's rule per image), "
                   f"a model name, or {ALL} (one row per image and model)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="labels kept in `top` (default %(default)s)")
    p.add_argument("--zoo", help="a folder with a manifest.json (e.g. weights/) or a BentoML store tag; "
                   "default: the store's latest fashion-zoo, else the shipped weights")
    p.add_argument("--address", help="a Ray cluster to run on (default: RAY_ADDRESS if set, else a local Ray)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cuda: one GPU per actor; auto: cuda when the cluster has GPUs (default)")
    p.add_argument("--batch-size", type=int, default=job.BATCH_SIZE, help="images per actor call (default %(default)s)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0,
                   help="CPUs each actor asks for = its sessions' threads (default %(default)s)")
    p.add_argument("--actors", type=int, help="size of the actor pool (default: as many as the cluster fits)")
    p.add_argument("--part-rows", type=int, default=job.PART_ROWS, help="rows per Parquet part, at most (and a part "
                   f"every {job.PART_SECONDS:.0f} s: an interruption loses at most one) (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in OUT and start over")
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 if any file could not be classified")
    p.add_argument("--progress", choices=("auto", "bars", "lines"), default="auto",
                   help="Ray Data's progress bars (auto: on a terminal) or a plain line every few seconds")
    args = p.parse_args(argv)
    if min(args.top_k, args.batch_size, args.part_rows, args.actors or 1) < 1 or args.cpus_per_actor <= 0:
        p.error("--top-k, --batch-size, --part-rows, --cpus-per-actor and --actors must be positive")
    return args


def choose_models(manifest: dict, model: str, top_k: int) -> tuple[list[str], dict | None]:
    """The service's reading of `model` (service.inference.answering); raises ZooError."""
    from service.inference import UnknownModel, answering
    from service.runtime import Zoo

    try:
        names, auto = answering(Zoo(tag="", manifest=manifest), model)
    except UnknownModel as e:
        raise ZooError(str(e)) from None
    n_classes = min(len(manifest["models"][n]["classes"]) for n in names)
    if top_k > n_classes:
        raise ZooError(f"--top-k must be from 1 to {n_classes}, got {top_k}")
    return names, auto


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        zoo = resolve(args.zoo)
        names, auto = choose_models(zoo.manifest, args.model, args.top_k)
        sources = find(args.src)
        classes = {n: zoo.manifest["models"][n]["classes"] for n in names}
        meta = metadata(zoo.tag, zoo.manifest_sha256, args.model, args.top_k, classes)
        out = Output(args.out, meta, overwrite=args.overwrite)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = sources.remaining(out.done)
    said = f"{len(sources.paths):,} images in {args.src}"
    if sources.skipped:
        said += f" ({sources.skipped:,} other files skipped)"
    if out.done:
        said += f"; {len(sources.paths) - len(todo):,} already in {args.out}, {len(todo):,} to classify"
    print(f"catalogue: {said}; zoo {zoo.tag}, model={args.model}", file=sys.stderr, flush=True)
    if not len(todo):
        print(f"catalogue: nothing to do: every image is in {args.out} ({out.done_rows:,} rows); "
              f"--overwrite starts over", file=sys.stderr)
        return 0
    progress = sys.stderr.isatty() if args.progress == "auto" else args.progress == "bars"
    plan = job.Plan(names, auto, args.top_k, args.device, args.batch_size, args.cpus_per_actor, args.actors,
                    args.part_rows)
    tally = None
    with job.Interruption() as stop:  # until Ray is shut down: a signal then is this job's too
        try:
            startup, resources = job.start_ray(args.address)
            stop.take()  # ray.init set its own SIGTERM handler
            if plan.device == "auto":  # the actors ask Ray for GPUs where the cluster has them
                plan.device = "cuda" if resources.get("GPU", 0) else "cpu"
            tally = job.run(zoo, sources, todo, out, plan, resources, progress, stop)
            tally.startup = startup
        except KeyboardInterrupt:  # a second signal: stopped at once, the block in hand not awaited
            pass
        except SystemExit as e:  # a SIGTERM inside ray.init met Ray's handler, sys.exit(SIGTERM)
            if e.code != signal.SIGTERM:
                raise
            stop.signal = stop.signal or signal.SIGTERM
        finally:
            stop.shutting_down = True
            _shutdown()
    if tally is None or tally.images < len(todo):  # a signal after the last block lost nothing: a normal end
        print(f"\ninterrupted: {out.parts} part(s) written to {args.out} this run; run the same command "
              f"again to classify the rest", file=sys.stderr)
        return stop.exit_code
    classified = tally.images - tally.failed
    rate = tally.images / tally.seconds if tally.seconds else 0.0
    print(f"catalogue: {classified:,} images classified, {tally.failed:,} failed (see the error column), in "
          f"{tally.seconds:.1f} s: {rate:,.0f} images/s, {tally.steady_rate:,.0f} images/s steady "
          f"(10% to 90% done), first results after {tally.first_result:.1f} s; {tally.actors} actor(s) on "
          f"{tally.nodes} node(s), {plan.device}; Ray start-up "
          f"{tally.startup:.1f} s apart; {out.parts} part(s) in {args.out}", file=sys.stderr)
    return 1 if args.fail_on_error and tally.failed else 0


def _shutdown() -> None:
    ray = sys.modules.get("ray")  # not imported: never started
    if ray is not None and ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
