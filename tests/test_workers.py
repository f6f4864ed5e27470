"""Worker processes: how many (service.workers.worker_count), and a real server with two workers where
readiness, the one-time store check, /metrics and the web page are right across both."""
import os
import re
import signal
import time

import httpx
import psutil
import pytest

from service import workers
from tests.images import grey_png

WORKER_SCRIPT = "_bentoml_impl.worker.service"
PNG = grey_png(30, box=(8, 6, 20, 22), ink=200)   # a light item on a dark 28x28 background


def test_default_is_one_worker_per_core_and_the_environment_overrides():
    n, why = workers.worker_count(gpu=False, env={})
    assert n == len(os.sched_getaffinity(0)) and "one per CPU core" in why
    n, why = workers.worker_count(gpu=True, env={})
    assert 1 <= n <= workers.GPU_MAX_WORKERS and "CUDA context" in why
    assert workers.worker_count(gpu=False, env={"FASHION_ZOO_WORKERS": "3"}) == (3, "FASHION_ZOO_WORKERS=3")


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5"])
def test_a_bad_worker_count_says_what_to_give(text):
    with pytest.raises(ValueError, match="whole number >= 1"):
        workers.worker_count(gpu=False, env={"FASHION_ZOO_WORKERS": text})


@pytest.fixture(scope="module")
def two_workers(exported_zoo, tmp_path_factory):
    from tests.service_server import serve

    _, home = exported_zoo
    with serve(home, tmp_path_factory.mktemp("workers") / "serve.log", workers=2) as s:
        yield s


def _worker_pids(server) -> list[int]:
    pids = []
    for p in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and WORKER_SCRIPT in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return sorted(pids)


def _loaded(server) -> set[int]:
    """The workers that have loaded and verified their zoo: each logs so at the end of its start-up."""
    return {int(pid) for pid in re.findall(r"fashion-zoo worker (\d+): ", server.output())}


def test_two_workers_start_log_once_and_are_all_ready(two_workers):
    pids = _worker_pids(two_workers)
    assert len(pids) == 2
    log = two_workers.output()
    # The start-up line and the store check run once, in the server process, not per worker.
    assert len(re.findall(r"fashion-zoo: 2 worker process\(es\): FASHION_ZOO_WORKERS=2", log)) == 1
    deadline = time.monotonic() + 60  # /readyz said 200 once one worker was ready
    while time.monotonic() < deadline and not set(pids) <= _loaded(two_workers):
        time.sleep(0.2)
    assert set(pids) <= _loaded(two_workers)  # each loaded and verified its zoo
    for _ in range(6):  # new connections, answered by either worker
        assert httpx.get(f"{two_workers.url}/readyz").status_code == 200


def test_classify_metrics_and_page_across_workers(two_workers):
    n = 24
    for _ in range(n):  # a new connection each: the kernel hands them to both workers
        r = httpx.post(f"{two_workers.url}/classify", files={"image": ("x.png", PNG, "image/png")})
        assert r.status_code == 200 and "label" in r.json()
    totals = set()
    for _ in range(4):  # /metrics from whichever worker answers: the sum over both
        text = httpx.get(f"{two_workers.url}/metrics").text
        counts = re.findall(r'bentoml_service_request_total\{[^}]*endpoint="/classify"[^}]*http_response_code="200"'
                            r'[^}]*\} ([0-9.e+]+)', text)
        totals.add(sum(float(c) for c in counts))
    assert totals == {float(n)}
    for _ in range(4):
        page = httpx.get(f"{two_workers.url}/ui/")
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_a_killed_worker_is_replaced_and_serves(two_workers):
    victim = _worker_pids(two_workers)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = _worker_pids(two_workers)
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.3)
    assert len(pids) == 2 and victim not in pids
    # While the new worker loads its zoo it accepts no connection: every request meanwhile, each on a
    # new connection, is answered by the other worker.
    deadline, answers = time.monotonic() + 120, []
    while time.monotonic() < deadline and not set(pids) <= _loaded(two_workers):
        answers.append(httpx.post(f"{two_workers.url}/classify", files={"image": ("x.png", PNG, "image/png")}))
    assert set(pids) <= _loaded(two_workers), "the new worker never got ready"
    assert [r.status_code for r in answers if r.status_code != 200] == [], answers[-1].text
    for _ in range(8):  # a new connection each: whichever worker takes it answers
        r = httpx.post(f"{two_workers.url}/classify", files={"image": ("x.png", PNG, "image/png")})
        assert r.status_code == 200, r.text
