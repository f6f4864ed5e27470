"""`make bench` code paths on tiny data: every section runs and the reports are valid. Figures are
measured, never asserted here (speed belongs in the report, not in a test)."""
import json
import subprocess
import sys

import pytest

from bench import service, wrk
from bench.__main__ import run
from bench.server import Server


def test_quick_bench_writes_valid_reports(tmp_path, fmnist_dir):
    """`python -m bench --quick 1` on synthetic Fashion-MNIST: training, inference, quantization."""
    art = tmp_path / "art"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--artifacts", str(art), "--data-dir", str(fmnist_dir), "--quick", "1",
         "--sections", "training,inference,quantization", "--models", "baseline"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((art / "reports" / "bench.json").read_text())
    assert report["quick"] is True and report["machine"]["cores"] >= 1
    speedup = report["training"]["speedup_vs_naive"]["baseline"]
    assert speedup["min"] <= speedup["median"] <= speedup["max"] and speedup["n"] == 3
    settings = report["training"]["settings"]
    assert 0 < settings["images_timed"] <= settings["epoch_images"] < 6400  # the small synthetic split
    inf = report["inference"]["baseline"]
    assert set(inf["ort_images_per_s"]) == {"1", "64", "1024"}
    assert inf["ort_vs_torch_bs1"]["median"] > 0
    assert inf["macs_per_image"] == 416_520  # conv 117,600 + conv 240,000 + fc 58,920
    assert "exported in-process" in inf["onnx"]
    q = report["quantization"]["baseline"]
    assert 0 <= q["accuracy_int8"] <= 1 and set(q["by_batch"]) == {"1", "64", "1024"}
    md = (art / "reports" / "bench.md").read_text()
    assert "| `baseline` |" in md and "## Service" in md
    assert "| `baseline` |" in proc.stdout  # the table is printed too


def test_missing_data_skips_training_with_the_fix(tmp_path):
    report = run(str(tmp_path / "art"), str(tmp_path / "nodata"), quick=True, sections=("training",))
    assert "make data" in report["training"]["skipped"]
    assert json.loads((tmp_path / "art" / "reports" / "bench.json").read_text())["training"] == report["training"]


def test_a_failing_section_is_reported_and_the_rest_runs(tmp_path, fmnist_dir):
    art = tmp_path / "art"
    (art / "onnx").mkdir(parents=True)
    (art / "onnx" / "baseline.onnx").write_bytes(b"not an onnx file")
    report = run(str(art), str(tmp_path / "nodata"), quick=True, sections=("inference", "training"),
                 models=["baseline"])
    assert "error" in report["inference"]
    assert "skipped" in report["training"]
    assert "error:" in (art / "reports" / "bench.md").read_text()


needs_wrk = pytest.mark.skipif(not wrk.available(), reason=wrk.MISSING)


@needs_wrk
def test_service_section_without_a_stored_zoo_measures_the_ceiling(tmp_path, monkeypatch, fmnist_dir):
    """Warm-up, alternating runs and worker memory, with 2 workers."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    out = service.run(str(fmnist_dir), quick=True, reps=1, concurrency=(1, 4), seconds={1: 1, 4: 1},
                      warmup_s=1, batch_seconds=1, workers=(2,))
    assert "make export" in out["skipped"]
    two = out["by_workers"]["2"]
    assert set(two["noop"]) == {"1", "4"} and two["noop"]["4"]["errors"] == 0
    assert two["noop"]["4"]["requests"] > 0 and two["noop"]["4"]["p50_ms"]["median"] > 0
    assert two["noop_batch_images_per_s"]["median"] > 0
    assert two["warmup"]["noop"]["requests"] > 0
    assert [len(two["rss_mb"]["noop"][k]) for k in ("start", "after_warmup", "end")] == [2, 2, 2]
    assert "wrk" in out["settings"]["load_generator"]


def test_without_wrk_the_load_sections_say_how_to_install_it(tmp_path, monkeypatch, fmnist_dir):
    monkeypatch.setenv("PATH", str(tmp_path))  # no wrk on it
    from bench import peers

    assert service.run(str(fmnist_dir), quick=True) == {"skipped": wrk.MISSING}
    assert peers.run(str(fmnist_dir), quick=True) == {"skipped": wrk.MISSING}
    assert "apt-get install wrk" in wrk.MISSING


@needs_wrk
def test_soak_reports_every_workers_memory_at_each_count(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    body, ctype = wrk.multipart([("image", "a.png", b"\x89PNG fake", "image/png")])
    server = Server("bench.noop_service:Noop", tmp_path / "noop.log", env={"FASHION_ZOO_WORKERS": "2"})
    url = server.start().wait_ready()
    try:
        out = service.soak(f"{url}/classify", body, ctype, server, at_requests=(100, 300), log=lambda m: None)
    finally:
        server.stop()
    assert out["requests"] >= 300 and out["errors"] == 0
    assert 100 <= out["requests_at"]["100"] <= out["requests_at"]["300"] == out["requests"]
    assert set(out["rss_mb"]) == {"100", "300"} and all(len(v) == 2 for v in out["rss_mb"].values())
    assert len(out["rss_growth"]) == 2


@pytest.mark.parametrize("text", ["0", "1"])
def test_bad_model_name_is_one_line(tmp_path, text):
    proc = subprocess.run([sys.executable, "-m", "bench", "--artifacts", str(tmp_path), "--quick", text,
                           "--models", "resnet"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Unknown model 'resnet'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@needs_wrk
def test_peers_answer_the_zoos_body_and_are_measured_one_at_a_time(exported_zoo, monkeypatch, fmnist_dir):
    """bench.peers on the small exported zoo: every server starts alone, the hand-written FastAPI
    and LitServe peers answer exactly the zoo's JSON for the same image (the no-op a constant of the
    same fields), and every figure of the section and its report is there."""
    from bench import peers, report

    _, home = exported_zoo
    monkeypatch.setenv("BENTOML_HOME", str(home))  # for the servers; this process's BentoML read it at import
    (root,) = [p.parent for p in (home / "models" / "fashion-zoo").glob("*/manifest.json")]
    out = peers.run(str(fmnist_dir), quick=True, rounds=1, seconds=1, observability_seconds=1, warmup_s=0,
                    only=("zoo", "zoo+access_log", "fastapi", "litserve", "noop"), root=root, log=lambda m: None)
    assert "failed" not in out, out.get("failed")
    assert out["bodies"] == {"zoo": "identical", "zoo+access_log": "identical", "fastapi": "identical",
                             "litserve": "identical", "noop": "same fields"}
    assert set(out["results"]) == {"zoo batchnorm", "zoo auto", "zoo batchnorm + access log", "fastapi",
                                   "litserve", "noop"}
    for label, r in out["results"].items():
        assert r["requests"] > 0 and r["errors"] == 0 and r["server_cpu_ms_per_request"]["median"] > 0, label
    assert out["best_peer"] in ("fastapi", "litserve")
    assert out["vs_best_peer"]["zoo batchnorm"]["rps"]["median"] > 0
    assert "access log" in out["observability_cost"]
    md = "\n".join(report.peers_md(out))
    assert "| zoo batchnorm |" in md and "| litserve |" in md and "(the best peer)" in md
