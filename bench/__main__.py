"""`make bench`: the zoo against what a user would use instead, side by side on this machine.

    python -m bench --artifacts artifacts --data-dir data            # the full run (several minutes)
    python -m bench --artifacts artifacts --data-dir data --quick 1  # under two minutes
    python -m bench --sections inference --models baseline,numfilters
    python -m bench --sections service --soak 1                      # + 50,000 requests, memory per worker
    python -m bench --sections peers                                 # the zoo against FastAPI, LitServe

Writes <artifacts>/reports/bench.json and bench.md and prints the tables; section X is the module
bench.X. A section that fails is reported as such and the others still run (the command exits 0
either way). docs/benchmarks.md has the goals and the current figures.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from training.config import parse_bool
from zoo.cli import ArgumentParser, cli
from zoo.registry import list_models

SECTIONS = ("training", "inference", "quantization", "service", "peers")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(artifacts: str, data_dir: str, quick: bool, sections: tuple[str, ...] = SECTIONS,
        models: list[str] | None = None, command: str = "", soak: bool = False) -> dict[str, Any]:
    """Run the sections and return the report (also written to <artifacts>/reports)."""
    from . import machine, report

    t0 = time.perf_counter()
    out: dict[str, Any] = {"format": 2, "command": command, "quick": quick, "soak": soak,
                           "machine": machine.describe(),
                           "sections": {}}
    m = out["machine"]
    log(f"bench on {machine.short(m)}{' (QUICK)' if quick else ''}; other processes use "
        f"{m['others_cores_at_start']} cores")
    # Each section's call, made when its turn comes (quantization uses the inference section's settings).
    calls = {"training": lambda s: s.run(data_dir, quick, tuple(n for n in s.MODELS if not models or n in models),
                                         log=log),
             "inference": lambda s: s.run(artifacts, quick, models=models, peak_macs_per_s=m["peak_macs_per_s"],
                                          cores=m["cores"], log=log),
             "quantization": lambda s: s.run(artifacts, data_dir, quick, models=models, log=log,
                                             ort_settings=(out.get("inference", {}).get("settings") or {}).get("ort")),
             "service": lambda s: s.run(data_dir, quick, do_soak=soak, log=log),
             "peers": lambda s: s.run(data_dir, quick, log=log)}
    for name in sections:
        log(f"[{name}]")
        load_before, t_section, others = round(os.getloadavg()[0], 2), time.perf_counter(), machine.OthersCPU()
        try:
            out[name] = calls[name](importlib.import_module(f".{name}", __package__))
        except Exception as e:  # one section's failure is reported there; the rest still runs
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  {name} failed: {type(e).__name__}: {e}")
            log("".join(traceback.format_exc(limit=-3)).rstrip())
        if "skipped" in out[name]:
            log(f"  {name} skipped: {out[name]['skipped']}")
        # Other people's work on the machine, in cores, and the 1-minute load average before and
        # after (which includes the benchmark's own work).
        out["sections"][name] = {"seconds": round(time.perf_counter() - t_section, 1),
                                 "others_cores": others.cores(),
                                 "load_1min": [load_before, round(os.getloadavg()[0], 2)]}
    m["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    text = report.markdown(out)
    js, md = report.write(out, text, Path(artifacts) / "reports")
    print(text)
    log(f"wrote {js} and {md}")
    return out


def _names(text: str, choices: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in choices:
            raise ValueError(f"Unknown {what} {n!r}; choose from: {', '.join(choices)}")
    return names


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m bench", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default="artifacts", help="reports go to <artifacts>/reports")
    parser.add_argument("--data-dir", default="data", help="Fashion-MNIST in <data-dir>/FashionMNIST/raw")
    parser.add_argument("--quick", type=parse_bool, default=False, metavar="0|1",
                        help="fewer images and requests: under two minutes")
    parser.add_argument("--soak", type=parse_bool, default=False, metavar="0|1",
                        help="also soak the service: 50,000 requests, every worker's memory at 10,000 and 50,000")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {SECTIONS}")
    parser.add_argument("--models", default="", help="comma-separated model names (default: every model)")
    args = parser.parse_args()
    sections = tuple(_names(args.sections, SECTIONS, "section"))
    models = _names(args.models, list_models(), "model") or None
    command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run(args.artifacts, args.data_dir, args.quick, sections, models, command, args.soak)


if __name__ == "__main__":
    main()
