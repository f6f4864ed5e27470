"""bench.json and bench.md: the figures, and the settings they were measured with
(the goals they are judged by are in docs/benchmarks.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.cli import table
from zoo.fileio import write_atomic

from .machine import short
from .peers import MODEL as PEER_MODEL
from .service import SOAK_CONCURRENCY as SOAK_C
from .stats import fmt, fmt_pct


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
    lines = table(["model", "ours (s/epoch)", "naive (s/epoch)", "speed-up"],
                  [[f"`{name}`", fmt(r["ours_s_per_epoch"]), fmt(r["naive_s_per_epoch"]),
                    fmt(r["speedup_vs_naive"], "x")] for name, r in t["models"].items()])
    how = (f"timed on {s['images_timed']:,} of the {s['epoch_images']:,} training images per repetition and "
           f"extrapolated to a whole epoch" if s["extrapolated"] else "whole epochs")
    lines += ["", f"Ours: {s['ours']}. Naive: {s['naive']}. Both: batch {s['batch_size']}, {s['optimizer']}, "
                  f"{s['torch_threads']} torch thread(s) (TrainConfig.threads), same model and images; "
                  f"{how}; median (min–max) of {s['repetitions']} alternating repetitions."]
    return lines


def inference_md(inf: dict[str, Any]) -> list[str]:
    models = {k: v for k, v in inf.items() if k != "settings"}
    batches = list(next(iter(models.values()))["ort_images_per_s"]) if models else []
    rows = []
    for name, r in models.items():
        peak = r.get("ort_fraction_of_peak")
        rows.append([f"`{name}`", f"{r['macs_per_image']:,}", *(fmt(r["ort_images_per_s"][b]) for b in batches),
                     *(fmt(r["torch_images_per_s"][b]) for b in batches), fmt(r["ort_vs_torch_bs1"], "x"),
                     "–" if peak is None else f"{100 * peak:.1f}% (bs{r['ort_best_batch']})"])
    lines = table(["model", "MACs/image", *(f"ORT bs{b}" for b in batches), *(f"torch bs{b}" for b in batches),
                   "ORT/torch bs1", "ORT best % of peak"], rows)
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
        lines += ["", f"ONNX Runtime session options at batch 1 (`{s['chosen_on']}`, images/s):", ""]
        lines += table(["intra-op threads", "execution mode", "graph optimisation", "images/s"],
                       [[r["intra_op_num_threads"], r["execution_mode"], r["graph_optimization_level"],
                         fmt(r["images_per_s"])] for r in sweep], "rllr")
    return lines


def quantization_md(q: dict[str, Any]) -> list[str]:
    models = {k: v for k, v in q.items() if k != "settings"}
    batches = list(next(iter(models.values()))["by_batch"]) if models else []
    head = ["model", "test acc fp32", "test acc int8", "change (points)",
            *(f"int8/fp32 speed bs{b}" for b in batches), "pays off"]
    lines = table(head, [[f"`{name}`", f"{100 * r['accuracy_fp32']:.2f}", f"{100 * r['accuracy_int8']:.2f}",
                          f"{r['accuracy_change_points']:+.2f}",
                          *(fmt(r["by_batch"][b]["int8_speedup"], "x") for b in batches),
                          "yes" if r["pays_off"] else "no"] for name, r in models.items()],
                  "l" + "r" * (len(head) - 2) + "l")
    s = q["settings"]
    lines += ["", f"{s['method']}; {s['calibration_images']} calibration images; accuracy on {s['accuracy_on']}; "
                  f"both files under the inference section's session options; {s['repetitions']} alternating "
                  "repetitions. Pays off: at most 0.5 points less accurate and over 1.1x faster at some batch size."]
    return lines


def service_md(sv: dict[str, Any]) -> list[str]:
    s = sv["settings"]
    rows = []
    for w, r in sv["by_workers"].items():
        for c, n in r["noop"].items():
            z = r.get("single", {}).get(c)
            rows.append([w, c, fmt(z and z["rps"]), fmt(z and z["p50_ms"]), fmt(z and z["p99_ms"]),
                         fmt(z and z["p99_over_p50"], "x"), "–" if z is None else z["errors"], fmt(n["rps"]),
                         fmt(n["p50_ms"]), fmt(n["p99_ms"]), fmt_pct(r.get("vs_noop", {}).get(c)),
                         f"{fmt(z and z.get('server_cpu_ms_per_request'))} / {fmt(n.get('server_cpu_ms_per_request'))}",
                         fmt_pct(r.get("vs_noop_by_cpu", {}).get(c)), fmt_pct((z or n)["client_cpu_share"])])
    lines = [f"Zoo service skipped: {sv['skipped']}", ""] if "skipped" in sv else []
    lines += table(["workers", "concurrency", "zoo rps", "zoo p50 (ms)", "zoo p99 (ms)", "p99/p50", "errors",
                    "no-op rps", "no-op p50 (ms)", "no-op p99 (ms)", "zoo / no-op",
                    "server CPU per request, zoo / no-op (ms)", "zoo / no-op by CPU", "load generator CPU"], rows, "r")
    lines.append("")
    for w, r in sv["by_workers"].items():
        mem = "; ".join(f"{k} " + ", ".join(f"{when} {v}" for when, v in m.items())
                        for k, m in r["rss_mb"].items())
        lines.append(f"- {w} worker(s): batch route (`POST /classify/batch`, {s['batch']['images_per_request']} "
                     f"images per request, concurrency {r['batch_concurrency']}): zoo "
                     f"{fmt(r.get('batch_images_per_s'))} images/s (p50 {fmt(r.get('batch', {}).get('p50_ms'))} ms, "
                     f"p99 {fmt(r.get('batch', {}).get('p99_ms'))} ms), no-op {fmt(r['noop_batch_images_per_s'])} "
                     f"images/s. Worker memory (MB, each worker): {mem}.")
        wr, so = r.get("worst_requests"), r.get("soak")  # with the default workers, the last
        if wr:
            lines += ["", f"Requests at the limits ({w} workers, one at a time; server CPU seconds, the smaller "
                          f"of two tries):", ""]
            lines += [f"- {name}: HTTP {c['status']}, {c['server_cpu_s']:.2f} s" for name, c in wr["cases"].items()]
        if so:
            growth = ", ".join(f"{100 * g:+.1f}%" for g in so["rss_growth"] or [])
            lines += ["", f"Soak ({w} workers): {so['requests']:,} requests at concurrency {SOAK_C} in "
                          f"{so['seconds']:.0f} s, {so['errors']} errors; worker memory (MB) "
                          + "; ".join(f"at {so.get('requests_at', {}).get(k, int(k)):,} requests {v}"
                                     for k, v in so["rss_mb"].items())
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
    rows = []
    for label, r in pe["results"].items():
        # A V2 route's answer is kept by its label, any other by its server's name (bench.peers.servers).
        server = ("zoo+access_log" if "access log" in label else "zoo+tracing" if "tracing" in label else
                  label if label in ("fastapi", "litserve", "noop") else "zoo")
        body = pe["bodies"].get(label) or pe["bodies"].get(server, "–")
        rows.append([label, fmt(r["rps"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["p99_over_p50"], "x"),
                     fmt(r["server_cpu_ms_per_request"]), fmt(r["server_cpu_cores"]), r["errors"],
                     "(auto: the ensemble's answer)" if label == "zoo auto" else body])
    lines = table(["server", "requests/s", "p50 (ms)", "p99 (ms)", "p99/p50", "server CPU per request (ms)",
                   "server CPU (cores)", "errors", "answer vs the zoo's"], rows, "lrrrrrrrl")
    lines.append("")
    versus = [(f"{zoo} / {pe['best_peer']} (the best peer)", v) for zoo, v in pe.get("vs_best_peer", {}).items()]
    versus += [(f"zoo {PEER_MODEL} V2 {form} / kserve V2 {form}", v) for form, v in pe.get("vs_kserve", {}).items()]
    versus += [(f"zoo {PEER_MODEL} V2 {form} / zoo {PEER_MODEL} (`/classify`, a PNG)", v)
               for form, v in pe.get("v2_vs_classify", {}).items()]
    lines += [f"- {what}: requests/s {fmt(v['rps'], 'x')}, by server CPU per request {fmt(v['by_cpu'], 'x')}."
              for what, v in versus]
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


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    busy = {k: v["others_cores"] for k, v in report.get("sections", {}).items()}
    lines = ["# Benchmarks", "",
             f"{m['date']} on {short(m)}. "
             f"`{report['command']}`, {report['seconds']:.0f} s"
             + (" (QUICK: fewer images and requests, shorter timing loops)." if report["quick"] else "."),
             f"Peak assumed: {m['peak_assumption']}.",
             "Other processes on the machine (cores, a lower bound): "
             f"{m['others_cores_at_start']} at the start" + "".join(f", {c} during {k}" for k, c in busy.items()) + "."]
    if max([m["others_cores_at_start"], *busy.values()]) > 0.25:
        lines.append("The machine was not idle: absolute figures are lower and noisier than on an idle machine.")
    lines.append("")
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


def write(data: dict[str, Any], md: str, reports_dir: Path, name: str = "bench") -> tuple[Path, Path]:
    """Write <name>.json and <name>.md atomically (the folder made if need be); returns their paths."""
    paths = reports_dir / f"{name}.json", reports_dir / f"{name}.md"
    write_atomic(paths[0], json.dumps(data, indent=2) + "\n")
    write_atomic(paths[1], md)
    return paths
