"""Images/s of the catalogue job (catalogue/, Ray Data) against the other ways to label a folder:

    python -m bench.catalogue --artifacts artifacts --data-dir data --kaggle-dir data/kaggle
    make bench-catalogue                                   # the same

On the same sets of real files, in rounds of alternating order: `python -m catalogue` on a local Ray,
POST /classify/batch to `bentoml serve`, and the bare loop (`catalogue.classifier.classify_files`, one
process per core, no Ray); then the job's peak memory at --memory image counts. docs/catalogue.md,
"Figures", has the setup. Model auto unless --models names others (e.g. `--models photo,colour --fm 0 --http 0`).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from catalogue.job import BATCH_SIZE
from service.params import MAX_BATCH_IMAGES
from service.workers import cpu_cores
from zoo.cli import table
from zoo.pretrained import weights_dir

from .server import ROOT, Server

BATCH = BATCH_SIZE  # the job's and the bare loop's batches; HTTP sends the route's most, MAX_BATCH_IMAGES


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_sets(data_dir: Path, kaggle_dir: Path, work: Path, n_fm: int, n_photo: int, n_large: int) -> dict[str, Path]:
    """Three folders of distinct real files: Fashion-MNIST PNGs (the test split, then the training
    split), Kaggle photos (hard links), and Kaggle photos upscaled 4x."""
    from PIL import Image

    from training.data.fashion_mnist import load_pixels  # real Fashion-MNIST images

    sets = {}
    if n_fm:
        fm = work / "fashion-mnist"
        fm.mkdir()
        images = load_pixels(data_dir, train=False)[0].numpy()
        if n_fm > len(images):
            images = np.concatenate([images, load_pixels(data_dir, train=True)[0].numpy()])
        for i, px in enumerate(images[:n_fm]):
            Image.fromarray(px.astype(np.uint8), "L").save(fm / f"{i:05d}.png")
        sets[f"{min(n_fm, len(images)):,} Fashion-MNIST PNGs (28x28)"] = fm
    photos = sorted((kaggle_dir / "images").glob("*.jpg"))
    small, large = work / "photos", work / "large"
    small.mkdir()
    large.mkdir()
    for p in photos[:n_photo]:
        os.link(p, small / p.name)
    for p in photos[:n_large]:
        with Image.open(p) as im:
            im.convert("RGB").resize((im.width * 4, im.height * 4), Image.Resampling.BICUBIC).save(
                large / p.name, quality=90)
    sets[f"{min(n_photo, len(photos)):,} Kaggle photos (60x80 JPEG)"] = small
    sets[f"{min(n_large, len(photos)):,} photos upscaled to 240x320 (JPEG)"] = large
    return sets


class RSS:
    """Peak resident memory of a process and of Ray's actor processes, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.driver, self.worker = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                rss = p.info["memory_info"].rss if p.info["memory_info"] else 0
                if p.pid == self.pid:
                    self.driver = max(self.driver, rss)
                elif " ".join(p.info["cmdline"] or ()).startswith("ray::MapWorker"):
                    self.worker = max(self.worker, rss)
            time.sleep(0.2)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"driver_mib": round(self.driver / 2**20, 1), "worker_mib": round(self.worker / 2**20, 1)}


_LAST = re.compile(r"([\d,]+) images classified, ([\d,]+) failed .* in ([\d.]+) s: ([\d,]+) images/s, "
                   r"([\d,]+) images/s steady \(10% to 90% done\), first results after ([\d.]+) s; (\d+) actor"
                   r".*Ray start-up ([\d.]+) s")


def run_catalogue(src: Path, work: Path, env: dict[str, str], model: str = "auto") -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=work, prefix="out-"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "catalogue", str(src), str(out), "--zoo", str(weights_dir()),
                             "--progress", "lines", "--overwrite", "--model", model,
                             "--batch-size", str(BATCH)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)
    rss = RSS(proc.pid)
    _, err = proc.communicate()
    mem = rss.stop()
    wall = time.perf_counter() - t0
    m = _LAST.search(err)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"catalogue failed ({proc.returncode}): {err[-2000:]}")
    n = lambda s: int(s.replace(",", ""))  # noqa: E731
    return {"images": n(m[1]), "failed": n(m[2]), "job_seconds": float(m[3]), "rate": n(m[4]),
            "steady_rate": n(m[5]), "pool_startup_s": float(m[6]), "actors": int(m[7]),
            "ray_startup_s": float(m[8]),
            "command_wall_s": round(wall, 1), **mem}


def run_http(src: Path, work: Path, env: dict[str, str], model: str = "auto") -> dict[str, Any]:
    import httpx

    files = sorted(p for p in src.iterdir() if p.is_file())
    chunks = [files[i:i + MAX_BATCH_IMAGES] for i in range(0, len(files), MAX_BATCH_IMAGES)]
    env = {**env, "BENTOML_HOME": str(work / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True"}
    # The shipped weights into the server's own store, as `make serve` does.
    subprocess.run([sys.executable, "-m", "release.shipped"], cwd=ROOT, env=env, check=True, capture_output=True)
    with Server("service.service:FashionZoo", work / "serve.log", env=env) as url:

        def post(chunk):
            with httpx.Client(base_url=url, timeout=300) as c:
                r = c.post("/classify/batch", params={"model": model},
                           files=[("image", (p.name, p.read_bytes())) for p in chunk])
                r.raise_for_status()
                return r.json()["count"]

        post(chunks[0])  # warm
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            done = sum(pool.map(post, chunks))
        seconds = time.perf_counter() - t0
    return {"images": done, "seconds": round(seconds, 2), "rate": round(done / seconds)}


def _bare_worker(args) -> tuple[int, float]:
    paths, barrier, model = args
    from catalogue.classifier import classify_files
    from service.inference import answering
    from service.runtime import load_zoo

    zoo = load_zoo(weights_dir(), "shipped weights", "cpu", threads=1)
    names, auto = answering(zoo, model)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        chunk = paths[i:i + BATCH]
        classify_files(zoo, names, auto, 3, model, chunk, [Path(p).read_bytes() for p in chunk])
    return len(paths), time.perf_counter() - t0


def run_bare(src: Path, processes: int, model: str = "auto") -> dict[str, Any]:
    files = sorted(str(p) for p in src.iterdir() if p.is_file())
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(processes)
        with ctx.Pool(processes) as pool:
            results = pool.map(_bare_worker, [(files[k::processes], barrier, model) for k in range(processes)])
    seconds = max(s for _, s in results)
    done = sum(n for n, _ in results)
    return {"images": done, "seconds": round(seconds, 2), "rate": round(done / seconds), "processes": processes}


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median `key` (the lower middle one of an even count), with every run's `key`."""
    ranked = sorted(runs, key=lambda r: r[key])
    return {**ranked[(len(ranked) - 1) // 2], "runs": [r[key] for r in runs]}


def markdown(report: dict[str, Any]) -> str:
    rows = []
    for name, r in report["sets"].items():
        c, h, b = r["catalogue"], r.get("http"), r["bare"]
        each = ", ".join(f"{100 * x:.0f}" for x in r["job_over_bare"]["runs"])
        rows.append([name, f"{c['steady_rate']:,} img/s", f"{b['rate']:,} img/s",
                     f"{100 * r['job_over_bare']['median']:.0f}% ({each})", f"{h['rate']:,} img/s" if h else "–",
                     f"{c['rate']:,} img/s", f"{c['ray_startup_s']} s + {c['pool_startup_s']} s"])
    memory = [[n, f"{m['driver_mib']} MiB", f"{m['worker_mib']} MiB", f"{m['steady_rate']:,} img/s"]
              for n, m in report["memory"].items()]
    lines = ["# The catalogue job against HTTP and the bare loop", "",
             f"{report['machine']}; load average at start {report['load_at_start']}; model="
             f"{', '.join(report['models'])}, shipped weights; "
             f"median of {report['rounds']} rounds (each round runs the three in turn, the order reversed every "
             f"other round; the job / bare loop ratio is the median of each round's own ratio); job and bare "
             f"loop batches of {report['batch']}, HTTP requests of {MAX_BATCH_IMAGES}.", "",
             *table(["files", "catalogue (Ray, steady)", "bare loop, one process per core",
                     "catalogue / bare loop (each round)", "HTTP /classify/batch", "catalogue (whole job)",
                     "Ray start-up + pool start-up"], rows), "",
             *table(["images", "driver peak RSS", "actor peak RSS", "steady rate"], memory, "r")]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--kaggle-dir", default="data/kaggle")
    p.add_argument("--fm", type=int, default=60_000, help="Fashion-MNIST PNGs (distinct; up to 70,000)")
    p.add_argument("--photos", type=int, default=24_000, help="60x80 Kaggle photos (distinct)")
    p.add_argument("--large", type=int, default=8_000, help="of those, upscaled to 240x320")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", default="auto", help="comma-separated: each set is measured with each (default: auto)")
    p.add_argument("--http", type=int, default=1, help="0: leave HTTP /classify/batch out")
    p.add_argument("--memory", default="10000,100000,200000",
                   help="image counts for the memory runs ('' for none)")
    args = p.parse_args()
    from .machine import describe, short
    from .report import write

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "FASHION_ZOO_"))}
    cores = cpu_cores()
    models = [m for m in args.models.split(",") if m]
    report: dict[str, Any] = {"machine": short(describe()), "load_at_start": round(os.getloadavg()[0], 2),
                              "rounds": args.rounds, "batch": BATCH, "models": models, "sets": {}, "memory": {}}
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as tmp:
        work = Path(tmp)
        sets = make_sets(Path(args.data_dir), Path(args.kaggle_dir), work, args.fm, args.photos, args.large)
        for (name, src), model in [(s, m) for s in sets.items() for m in models]:
            ways = {"bare": lambda src: run_bare(src, cores, model=model),
                    "catalogue": lambda src: run_catalogue(src, work, env, model=model)}
            if args.http:
                ways["http"] = lambda src: run_http(src, work, env, model=model)
            if len(models) > 1:
                name = f"{name}, model={model}"
            log(f"[{name}]")
            runs: dict[str, list] = {way: [] for way in ways}
            for k in range(args.rounds):
                for way in (list(ways) if k % 2 == 0 else list(ways)[::-1]):
                    runs[way].append(ways[way](src))
                    r = runs[way][-1]
                    log(f"  round {k + 1}, {way}: {r.get('steady_rate', r['rate']):,} img/s")
            report["sets"][name] = {way: median_run(rs, "steady_rate" if way == "catalogue" else "rate")
                                    for way, rs in runs.items()}
            # The machine's speed drifts between rounds: compare the job with the bare loop of its own round.
            ratios = sorted(round(c["steady_rate"] / b["rate"], 3) for c, b in zip(runs["catalogue"], runs["bare"]))
            report["sets"][name]["job_over_bare"] = {"median": statistics.median_low(ratios), "runs": ratios}
        photos = next(src for name, src in sets.items() if "Kaggle" in name)
        for n in [int(x) for x in args.memory.split(",") if x]:
            many = work / f"many-{n}"
            many.mkdir()
            files = sorted(photos.iterdir())
            for i in range(n):
                os.link(files[i % len(files)], many / f"{i:06d}.jpg")
            m = run_catalogue(many, work, env)
            report["memory"][f"{n:,}"] = {k: m[k] for k in ("driver_mib", "worker_mib", "steady_rate")}
            log(f"  {n:,} images: driver {m['driver_mib']} MiB, actor {m['worker_mib']} MiB")
    text = markdown(report)
    write(report, text, Path(args.artifacts) / "reports", "catalogue")
    print(text)


if __name__ == "__main__":
    main()
