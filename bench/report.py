"""bench.json and bench.md: the figures, the settings they were measured with, and the goals."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.fileio import write_atomic

from .machine import short
from .peers import MODEL as PEER_MODEL
from .service import SOAK_CONCURRENCY as SOAK_C
from .stats import fmt, pct

GOALS = {
    "training": ("our epoch >= 2.5x faster than the naive pipeline", 2.5),
    "inference": ("ONNX Runtime >= 3x PyTorch eager at batch 1", 3.0),
    "service": ("/classify rps at concurrency 64, default workers, >= 85% of the no-op with the same "
                "workers, zero errors", 0.85),
    "service_speedup": ("/classify rps at concurrency 64, default workers, >= 1.8x the 1,000 rps of one "
                        "worker before issue 12 (2-core machine)", 1.8),
    "service_tail": ("p99 <= 3x p50 at concurrency 64, default workers, after the warm-up", 3.0),
    "worst_request": ("the costliest request the service accepts takes <= ~1 s of server CPU", 1.0),
    "soak": ("every worker's memory grows <= 10% from 10,000 to 50,000 requests, zero errors", 0.10),
    "peers": ("/classify?model=batchnorm at concurrency 64, default workers, >= 1.0x the best peer with the "
              "same answer body in the same run, p99 <= 3x p50, zero errors", 1.0),
    "peers_kserve": ("/v2/models/batchnorm/infer at concurrency 64, default workers, >= 1.5x the requests/s of "
                     "KServe's own model server on the same V2 request, the same outputs, zero errors", 1.5),
    "peers_auto": ("/classify (model=auto) at concurrency 64, default workers, >= 1.6x the 1,231 rps of the "
                   "service before issue 19 (2-core machine)", 1.6),
}
RPS_BEFORE = 1000  # /classify at concurrency 64 on the 2-core machine before issue 12 (one worker, wrk)
# /classify (auto) at concurrency 64, 2 workers, wrk, 30 s, on the 2-core machine with the service of
# commit 1e0461d (h11, asyncio, access log and a span per request), its log to /dev/null; the same
# service logging to a file (as bench's servers do) served 740-867 rps.
AUTO_RPS_BEFORE = 1231


def _med(stat: dict[str, Any] | None) -> float | None:
    return stat["median"] if stat else None


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _problem(section: dict[str, Any] | None) -> str | None:
    if section is None:
        return "not run"
    if "error" in section:
        return f"error: {section['error']}"
    if "skipped" in section and "settings" not in section:  # nothing measured
        return f"skipped: {section['skipped']}"
    return None


def training_md(t: dict[str, Any]) -> list[str]:
    s = t["settings"]
    lines = ["| model | ours (s/epoch) | naive (s/epoch) | speed-up |", "|---|---:|---:|---:|"]
    for name, r in t["models"].items():
        lines.append(f"| `{name}` | {fmt(r['ours_s_per_epoch'])} | {fmt(r['naive_s_per_epoch'])} | "
                     f"{fmt(r['speedup_vs_naive'], 'x')} |")
    how = (f"timed on {s['images_timed']:,} of the {s['epoch_images']:,} training images per repetition and "
           f"extrapolated to a whole epoch" if s["extrapolated"] else "whole epochs")
    lines += ["", f"Ours: {s['ours']}. Naive: {s['naive']}. Both: batch {s['batch_size']}, {s['optimizer']}, "
                  f"{s['torch_threads']} torch thread(s) (TrainConfig.threads), same model and images; "
                  f"{how}; median (min–max) of {s['repetitions']} alternating repetitions."]
    return lines


def inference_md(inf: dict[str, Any]) -> list[str]:
    models = {k: v for k, v in inf.items() if k != "settings"}
    batches = list(next(iter(models.values()))["ort_images_per_s"]) if models else []
    head = ["model", "MACs/image"] + [f"ORT bs{b}" for b in batches] + [f"torch bs{b}" for b in batches] + \
           ["ORT/torch bs1", "ORT best % of peak"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, r in models.items():
        cells = [f"`{name}`", f"{r['macs_per_image']:,}"]
        cells += [fmt(r["ort_images_per_s"][b]) for b in batches]
        cells += [fmt(r["torch_images_per_s"][b]) for b in batches]
        peak = r.get("ort_fraction_of_peak")
        cells += [fmt(r["ort_vs_torch_bs1"], "x"),
                  "–" if peak is None else f"{100 * peak:.1f}% (bs{r['ort_best_batch']})"]
        lines.append("| " + " | ".join(cells) + " |")
    s = inf["settings"]
    ort1 = s["ort"]["1"]
    lines += ["", "Images per second, median (min–max). ONNX Runtime "
              f"(CPUExecutionProvider) at batch 1: intra_op_num_threads={ort1['intra_op_num_threads']}, "
              f"execution mode {ort1['execution_mode']}, graph optimisation {ort1['graph_optimization_level']} "
              f"(chosen at batch 1 on `{s['chosen_on']}`: the simplest setting unless another is clearly faster "
              f"on every one of the sweep's repetitions); threads by batch "
              + ", ".join(f"{b}: {c['intra_op_num_threads']}" for b, c in s["ort"].items())
              + ". PyTorch eager (inference_mode) threads by batch "
              + ", ".join(f"{b}: {c['threads']}" for b, c in s["torch"].items())
              + " (the faster of 1 and all cores). MACs count conv and linear layers."]
    fallback = [n for n, r in models.items() if "in-process" in r["onnx"]]
    if fallback:
        lines += ["", "No exported ONNX file (`make export`) for " + ", ".join(f"`{n}`" for n in fallback)
                  + ": exported in-process for this run (random weights where there is no checkpoint)."]
    sweep = s.get("ort_batch1_sweep_baseline")
    if sweep:
        lines += ["", f"ONNX Runtime session options at batch 1 (`{s['chosen_on']}`, images/s):", "",
                  "| intra-op threads | execution mode | graph optimisation | images/s |", "|---:|---|---|---:|"]
        lines += [f"| {r['intra_op_num_threads']} | {r['execution_mode']} | {r['graph_optimization_level']} | "
                  f"{fmt(r['images_per_s'])} |" for r in sweep]
    return lines


def quantization_md(q: dict[str, Any]) -> list[str]:
    models = {k: v for k, v in q.items() if k != "settings"}
    batches = list(next(iter(models.values()))["by_batch"]) if models else []
    head = ["model", "test acc fp32", "test acc int8", "change (points)"] + \
           [f"int8/fp32 speed bs{b}" for b in batches] + ["pays off"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for name, r in models.items():
        cells = [f"`{name}`", f"{100 * r['accuracy_fp32']:.2f}", f"{100 * r['accuracy_int8']:.2f}",
                 f"{r['accuracy_change_points']:+.2f}"]
        cells += [fmt(r["by_batch"][b]["int8_speedup"], "x") for b in batches]
        cells.append("yes" if r["pays_off"] else "no")
        lines.append("| " + " | ".join(cells) + " |")
    s = q["settings"]
    lines += ["", f"{s['method']}; {s['calibration_images']} calibration images; accuracy on {s['accuracy_on']}; "
                  f"both files under the inference section's session options; {s['repetitions']} alternating "
                  "repetitions. Pays off: at most 0.5 points less accurate and over 1.1x faster at some batch size."]
    return lines


def service_md(sv: dict[str, Any]) -> list[str]:
    s = sv["settings"]
    lines = []
    if "skipped" in sv:
        lines += [f"Zoo service skipped: {sv['skipped']}", ""]
    lines += ["| workers | concurrency | zoo rps | zoo p50 (ms) | zoo p99 (ms) | p99/p50 | errors | no-op rps | "
              "no-op p50 (ms) | no-op p99 (ms) | zoo / no-op | server CPU per request, zoo / no-op (ms) | "
              "zoo / no-op by CPU | load generator CPU |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w, r in sv["by_workers"].items():
        for c, n in r["noop"].items():
            z = r.get("single", {}).get(c)
            lines.append(f"| {w} | {c} | {fmt(z and z['rps'])} | {fmt(z and z['p50_ms'])} | "
                         f"{fmt(z and z['p99_ms'])} | {fmt(z and z['p99_over_p50'], 'x')} | "
                         f"{'–' if z is None else z['errors']} | {fmt(n['rps'])} | {fmt(n['p50_ms'])} | "
                         f"{fmt(n['p99_ms'])} | {pct(r.get('vs_noop', {}).get(c))} | "
                         f"{fmt(z and z.get('server_cpu_ms_per_request'))} / {fmt(n.get('server_cpu_ms_per_request'))} | "
                         f"{pct(r.get('vs_noop_by_cpu', {}).get(c))} | {pct((z or n)['client_cpu_share'])} |")
    lines.append("")
    for w, r in sv["by_workers"].items():
        mem = "; ".join(f"{k} " + ", ".join(f"{when} {v}" for when, v in m.items())
                        for k, m in r["rss_mb"].items())
        lines.append(f"- {w} worker(s): batch route (`POST /classify/batch`, {s['batch']['images_per_request']} "
                     f"images per request, concurrency {r['batch_concurrency']}): zoo "
                     f"{fmt(r.get('batch_images_per_s'))} images/s (p50 {fmt(r.get('batch', {}).get('p50_ms'))} ms, "
                     f"p99 {fmt(r.get('batch', {}).get('p99_ms'))} ms), no-op {fmt(r['noop_batch_images_per_s'])} "
                     f"images/s. Worker memory (MB, each worker): {mem}.")
    for w, r in sv["by_workers"].items():
        wr = r.get("worst_requests")
        if wr:
            lines += ["", f"Requests at the limits ({w} workers, one at a time; server CPU seconds, the smaller "
                          f"of two tries):", ""]
            lines += [f"- {name}: HTTP {c['status']}, {c['server_cpu_s']:.2f} s" for name, c in wr["cases"].items()]
    for w, r in sv["by_workers"].items():
        so = r.get("soak")
        if so:
            growth = ", ".join(f"{100 * g:+.1f}%" for g in so["rss_growth"] or [])
            lines += ["", f"Soak ({w} workers): {so['requests']:,} requests at concurrency {SOAK_C} in "
                          f"{so['seconds']:.0f} s, {so['errors']} errors; worker memory (MB) "
                          + "; ".join(f"at {int(k):,} requests {v}" for k, v in so["rss_mb"].items())
                          + f"; growth {growth}; p99 (ms) "
                          + ", ".join(f"{v:.0f}" for v in so["p99_ms"].values() if v is not None) + "."]
    lines += ["", f"Model `{sv.get('model', '–')}` ({sv.get('store_tag', 'not in the store')}); image: {s['image']}. "
                  f"Each figure: median (min–max) of {s['repetitions']} runs ("
                  + ", ".join(f"{t} s at concurrency {c}" for c, t in s["seconds_per_run"].items()) + "),"
                  f" alternating zoo and no-op, after a warm-up of {s['warmup_s']:.0f} s of steady "
                  f"load on both. Default workers: {s['default_workers']} ({s['default_workers_why']}). "
                  f"Load generator: {s['load_generator']}; its CPU use is shown as a share of one core. "
                  f"Server CPU per request: the workers' CPU time during a run over the requests answered; "
                  f"zoo / no-op by CPU is the no-op's over the zoo's, the requests/s ratio the workers would "
                  f"reach with the cores to themselves (it depends far less on other load than requests/s). "
                  f"No-op: {s['noop']}."]
    return lines


def peers_md(pe: dict[str, Any]) -> list[str]:
    s = pe["settings"]
    lines = ["| server | requests/s | p50 (ms) | p99 (ms) | p99/p50 | server CPU per request (ms) | "
             "server CPU (cores) | errors | answer vs the zoo's |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    server_of = {"fastapi": "fastapi", "litserve": "litserve", "noop": "noop"}
    for label, r in pe["results"].items():
        server = server_of.get(label) or ("zoo+access_log" if "access log" in label else
                                          "zoo+tracing" if "tracing" in label else "zoo")
        body = pe["bodies"].get(label) or pe["bodies"].get(server, "–")  # a V2 route's: by its label
        if label == "zoo auto":
            body = "(auto: the ensemble's answer)"
        lines.append(f"| {label} | {fmt(r['rps'])} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{fmt(r['p99_over_p50'], 'x')} | {fmt(r['server_cpu_ms_per_request'])} | "
                     f"{fmt(r['server_cpu_cores'])} | {r['errors']} | {body} |")
    lines.append("")
    for zoo, v in pe.get("vs_best_peer", {}).items():
        lines.append(f"- {zoo} / {pe['best_peer']} (the best peer): requests/s {fmt(v['rps'], 'x')}, "
                     f"by server CPU per request {fmt(v['by_cpu'], 'x')}.")
    for form, v in pe.get("vs_kserve", {}).items():
        lines.append(f"- zoo {PEER_MODEL} V2 {form} / kserve V2 {form}: requests/s {fmt(v['rps'], 'x')}, "
                     f"by server CPU per request {fmt(v['by_cpu'], 'x')}.")
    for form, v in pe.get("v2_vs_classify", {}).items():
        lines.append(f"- zoo {PEER_MODEL} V2 {form} / zoo {PEER_MODEL} (`/classify`, a PNG): requests/s "
                     f"{fmt(v['rps'], 'x')}, by server CPU per request {fmt(v['by_cpu'], 'x')}.")
    if pe.get("kserve_skipped"):
        lines.append(f"- kserve not run: {pe['kserve_skipped']}")
    if any(pe.get("kserve_worker_restarts", [])):
        lines.append(f"- kserve killed and restarted workers it judged hung (no answer to its 5 s ping; a "
                     f"worker still starting on a busy machine), by round: "
                     f"{', '.join(map(str, pe['kserve_worker_restarts']))}; its figures in such a round are "
                     f"low, and the CPU of a killed worker is not counted.")
    for feature, v in pe.get("observability_cost", {}).items():
        lines.append(f"- {feature} on: {fmt(v['server_cpu_ms_per_request_extra'])} ms more server CPU per "
                     f"request; requests/s {fmt(v['rps_vs_off'], 'x')} of the zoo with it off.")
    for name, why in pe.get("failed", {}).items():
        lines.append(f"- {name} did not start: {why}")
    lines += ["", f"One server at a time, {s['workers']} worker processes each ({s['workers_why']}), the same ONNX "
                  f"file (`{s['model']}` of {s['store_tag']}) and onnxruntime settings; {s['rounds']} round(s), each "
                  f"server started afresh in each, the order reversed every other round; per round a "
                  f"{s['warmup_s']:.0f} s warm-up, then {s['seconds']['headline']:.0f} s per headline figure "
                  f"({s['seconds']['observability']:.0f} s with the access log or tracing on) at concurrency "
                  f"{s['concurrency']}. Median (min–max) over the rounds; the 1-minute load average at the end of "
                  f"each run: " + ", ".join(f"{k} {fmt(r['load_1min'])}" for k, r in pe["results"].items())
              + f". Load generator: {s['load_generator']}. Image: {s['image']}. Tracing on: {s['tracing_on']}. "
                + (f"V2: {s['v2_request']}. " if s.get("v2_request") else "")
              + "Server CPU counts every process of the server."]
    return lines


def goals(report: dict[str, Any]) -> list[str]:
    lines = []
    t = report.get("training") or {}
    if "models" in t:
        worst = min(_med(v) for v in t["speedup_vs_naive"].values())
        lines.append(f"- Training, {GOALS['training'][0]}: {worst:.2f}x at worst — {_mark(worst >= 2.5)}")
    inf = {k: v for k, v in (report.get("inference") or {}).items() if k not in ("settings", "error", "skipped")}
    if inf:
        worst = min(_med(v["ort_vs_torch_bs1"]) for v in inf.values())
        lines.append(f"- Inference, {GOALS['inference'][0]}: {worst:.1f}x at worst — {_mark(worst >= 3.0)}")
    sv = report.get("service") or {}
    by = sv.get("by_workers") or {}
    default = by.get(str((sv.get("settings") or {}).get("default_workers")))
    if default and "vs_noop" in default:
        top = max(default["vs_noop"], key=int)
        share, z = _med(default["vs_noop"][top]), default["single"][top]
        rps, tail = _med(z["rps"]), _med(z["p99_over_p50"])
        by_cpu = default.get("vs_noop_by_cpu", {}).get(top)
        lines.append(f"- Service, {GOALS['service'][0]}: {share:.0%}"
                     + (f" (by server CPU per request: {_med(by_cpu):.0%})" if by_cpu else "")
                     + f", {default['errors']} errors — {_mark(share >= 0.85 and default['errors'] == 0)}")
        one = by.get("1")
        vs_one = f"; {rps / _med(one['single'][top]['rps']):.2f}x one worker in this run" if one and one is not default \
            and "single" in one else ""
        lines.append(f"- Service, {GOALS['service_speedup'][0]}: {rps:,.0f} rps = {rps / RPS_BEFORE:.2f}x{vs_one} — "
                     f"{_mark(rps >= 1.8 * RPS_BEFORE)}")
        lines.append(f"- Service, {GOALS['service_tail'][0]}: p50 {_med(z['p50_ms']):.1f} ms, p99 "
                     f"{_med(z['p99_ms']):.1f} ms = {tail:.1f}x — {_mark(tail <= 3.0)}")
    wr = (default or {}).get("worst_requests")
    if wr and wr["max_accepted_cpu_s"] is not None:
        worst = wr["max_accepted_cpu_s"]
        lines.append(f"- Service, {GOALS['worst_request'][0]}: {worst:.2f} s — {_mark(worst <= 1.0)}")
    pe = report.get("peers") or {}
    vs = (pe.get("vs_best_peer") or {}).get(f"zoo {PEER_MODEL}")
    zoo = (pe.get("results") or {}).get(f"zoo {PEER_MODEL}")
    if vs and vs["rps"] and zoo:
        ratio, tail = _med(vs["rps"]), _med(zoo["p99_over_p50"])
        ok = ratio >= 1.0 and tail <= 3.0 and zoo["errors"] == 0
        lines.append(f"- Peers, {GOALS['peers'][0]}: {ratio:.2f}x {pe['best_peer']} (by server CPU "
                     f"{_med(vs['by_cpu']):.2f}x), p99/p50 {tail:.1f}, {zoo['errors']} errors — {_mark(ok)}")
    for form, v in (pe.get("vs_kserve") or {}).items():
        zoo_v2 = (pe.get("results") or {}).get(f"zoo {PEER_MODEL} V2 {form}")
        if v["rps"] and zoo_v2:
            ratio = _med(v["rps"])
            same = all(pe["bodies"].get(f"{who} V2 {form}", "").startswith("same")
                       for who in (f"zoo {PEER_MODEL}", "kserve"))
            # A worker KServe killed and restarted mid-run costs it requests, and its CPU leaves the
            # count with it: such a run says nothing about the goal.
            restarted = any(pe.get("kserve_worker_restarts", []))
            ok = ratio >= GOALS["peers_kserve"][1] and same and zoo_v2["errors"] == 0 and not restarted
            by_cpu = f"{_med(v['by_cpu']):.2f}x" if v["by_cpu"] else "–"
            lines.append(f"- Peers, V2 {form}, {GOALS['peers_kserve'][0]}: {ratio:.2f}x (by server CPU "
                         f"{by_cpu}), {zoo_v2['errors']} errors — "
                         + ("not judged: KServe restarted workers during the run" if restarted else _mark(ok)))
    auto = (pe.get("results") or {}).get("zoo auto")
    if auto:
        rps = _med(auto["rps"])
        lines.append(f"- Peers, {GOALS['peers_auto'][0]}: {rps:,.0f} rps = {rps / AUTO_RPS_BEFORE:.2f}x — "
                     f"{_mark(rps >= 1.6 * AUTO_RPS_BEFORE)}")
    for w, r in by.items():
        so = r.get("soak")
        if so and so["rss_growth"]:
            worst = max(so["rss_growth"])
            lines.append(f"- Soak ({w} workers), {GOALS['soak'][0]}: at most {100 * worst:+.1f}%, {so['errors']} "
                         f"errors — {_mark(worst <= 0.10 and so['errors'] == 0)}")
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# Benchmarks", "",
             f"{m['date']} on {short(m)}. "
             f"`{report['command']}`, {report['seconds']:.0f} s"
             + (" (QUICK: fewer images and requests, shorter timing loops)." if report["quick"] else "."),
             f"Peak assumed: {m['peak_assumption']}."]
    busy = {k: v["others_cores"] for k, v in report.get("sections", {}).items()}
    lines.append("Other processes on the machine (cores, a lower bound): "
                 f"{m['others_cores_at_start']} at the start"
                 + "".join(f", {c} during {k}" for k, c in busy.items()) + ".")
    if max([m["others_cores_at_start"], *busy.values()]) > 0.25:
        lines.append("The machine was not idle: absolute figures are lower and noisier than on an idle machine.")
    lines.append("")
    if goals(report):
        lines += ["Goals:", *goals(report), ""]
    for key, title, body in (("training", "Training: seconds per epoch", training_md),
                             ("inference", "Inference: images per second", inference_md),
                             ("quantization", "INT8 quantization (ONNX Runtime, static)", quantization_md),
                             ("service", "Service", service_md),
                             ("peers", "Peers: the zoo against the servers a user would run instead", peers_md)):
        section = report.get(key)
        lines += [f"## {title}", ""]
        problem = _problem(section)
        if problem:
            lines += [problem, ""]
            continue
        try:
            lines += body(section) + [""]
        except Exception as e:  # a partial section still leaves the rest of the report readable
            lines += [f"(cannot tabulate: {type(e).__name__}: {e}; see bench.json)", ""]
    return "\n".join(lines)


def write(report: dict[str, Any], reports_dir: Path) -> tuple[Path, Path]:
    """Write bench.json and bench.md atomically; returns their paths."""
    js, md = reports_dir / "bench.json", reports_dir / "bench.md"
    write_atomic(js, json.dumps(report, indent=2) + "\n")
    write_atomic(md, markdown(report))
    return js, md
