"""The CPU overlay's Deployment run as a pod with `podman kube play` (`-m k8s`; `make k8s-play`).

podman runs a Deployment's pod template as pods. The Deployment that `kubectl kustomize
deploy/k8s/overlays/cpu` renders is played as it is, except for what a single machine needs:
one replica, the image under test (tests/container_image.py: built here, or FASHION_ZOO_IMAGE), a
hostPort on 127.0.0.1, volume names of this run (podman 4.3 makes each emptyDir a volume named as
in the manifest, shared by every pod that names it), and restartPolicy Never (podman restarts an
exited container of a played Deployment; a deleted Kubernetes pod is not restarted, and the
shutdown test needs to see it exit). The pod's security context, resources, environment (the
worker count from the CPU limit through the downward API) and volumes are the manifest's.

Checked: /readyz answers (start-up time printed); every model labels a Fashion-MNIST PNG and a
product photo as the local ONNX run does; the server runs as the manifest's non-root user, on a
read-only root filesystem, with no capabilities and no privilege escalation, with one worker per
CPU of the limit; /metrics answers; memory after FASHION_ZOO_K8S_REQUESTS requests (default 2,000)
stays under the memory limit (figures printed); and, last, the kubelet's shutdown sequence (the
preStop command, then SIGTERM): requests in flight at SIGTERM finish with 200, connections are
accepted through the pause and refused only after SIGTERM, and the server exits with status 0
within the grace period.

Not covered, for want of a cluster: the probes as the kubelet runs them (podman 4.3 turns a
livenessProbe into a healthcheck it cannot run without systemd and ignores the others; the tests
call the probes' paths themselves), the Service and its endpoint removal, the autoscaler, the
disruption budget, scheduling and the spread over nodes.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from bench.server import free_port, wait_ready
from container_image import backend_env, check_labels, classify, export_manifest, onnx_sessions
from deploy.k8s import validate
from tests.images import fashion_png, gradient_png, product_photo, product_photos  # noqa: F401  (fixtures too)

pytestmark = pytest.mark.k8s
CONTAINER = "fashion-zoo"   # the Deployment's container
REQUESTS = int(os.environ.get("FASHION_ZOO_K8S_REQUESTS", "2000"))


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity (1Gi, 640Mi, 1G, 1073741824) in bytes."""
    units = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}
    for suffix, factor in units.items():
        if str(text).endswith(suffix):
            return int(float(str(text)[:-len(suffix)]) * factor)
    return int(text)


def quantity_cpus(text: str) -> float:
    return float(str(text)[:-1]) / 1000 if str(text).endswith("m") else float(text)


# Run inside the pod: each process but this one, with its RSS and PSS and whether it is a worker.
MEMORY_SCRIPT = """
import glob, os
for d in glob.glob('/proc/[0-9]*'):
    if d == f'/proc/{os.getpid()}':
        continue
    try:
        fields = dict(l.split(':', 1) for l in open(d + '/smaps_rollup').read().splitlines()[1:])
        worker = '--worker-id' in open(d + '/cmdline').read()
        print(d[6:], fields['Rss'].split()[0], fields['Pss'].split()[0], int(worker))
    except (OSError, KeyError, ValueError):
        pass
"""


class PlayedPod:
    """The rendered Deployment, adapted as the module docstring says, played with podman."""

    def __init__(self, image: str, workdir: Path) -> None:
        objects = validate.render(validate.OVERLAYS / "cpu")
        self.deployment = next(o for o in objects if o["kind"] == "Deployment")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        played = yaml.safe_load(yaml.safe_dump(self.deployment))
        played["spec"]["replicas"] = 1
        spec = played["spec"]["template"]["spec"]
        spec["restartPolicy"] = "Never"
        suffix = f"-{os.getpid()}-{self.port}"
        for volume in spec.get("volumes", []):
            volume["name"] += suffix
        container = next(c for c in spec["containers"] if c["name"] == CONTAINER)
        for mount in container.get("volumeMounts", []):
            mount["name"] += suffix
        container["image"] = image
        http = next(p for p in container["ports"] if p["name"] == "http")
        http.update(hostPort=self.port, hostIP="127.0.0.1")
        self.container = container
        self.file = workdir / "deployment.yaml"
        self.file.write_text(yaml.safe_dump(played))
        self.name = f"{played['metadata']['name']}-pod-0-{CONTAINER}"   # podman's name for it

    def podman(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                             env=backend_env("podman"))
        assert not check or out.returncode == 0, f"podman {' '.join(args)}: {out.stderr[-3000:]}"
        return out

    def play(self) -> float:
        """Seconds from `podman kube play` to /readyz answering 200."""
        start = time.monotonic()
        out = self.podman("kube", "play", str(self.file))
        if out.returncode != 0:
            raise AssertionError(f"podman kube play failed: {out.stdout[-2000:]}{out.stderr[-3000:]}")
        return wait_ready(self.url, self.running, start, 180, self.logs, "the pod", poll=0.1)

    def running(self) -> bool:
        return self.podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def logs(self) -> str:
        out = self.podman("logs", self.name)
        return out.stdout + out.stderr

    def exec(self, *args: str) -> subprocess.CompletedProcess:
        return self.podman("exec", self.name, *args, timeout=60)

    def down(self) -> None:
        self.podman("kube", "down", str(self.file), timeout=120)

    def memory(self) -> dict[str, int]:
        """Bytes: RSS and PSS summed over the pod's processes (read inside it), and the cgroup's
        usage, peak and limit where the host's cgroup files show them."""
        out = self.exec("python", "-c", MEMORY_SCRIPT)
        assert out.returncode == 0, out.stderr
        processes = [line.split() for line in out.stdout.splitlines()]   # pid, RSS, PSS (KiB), worker?
        figures = {"rss": sum(int(p[1]) for p in processes) * 1024, "pss": sum(int(p[2]) for p in processes) * 1024,
                   "processes": len(processes),
                   "worker_rss": [int(p[1]) * 1024 for p in processes if p[3] == "1"]}
        path = self.podman("inspect", "--format", "{{.State.CgroupPath}}", self.name).stdout.strip()
        for root, usage, peak, limit in (("/sys/fs/cgroup/memory", "memory.usage_in_bytes",
                                          "memory.max_usage_in_bytes", "memory.limit_in_bytes"),
                                         ("/sys/fs/cgroup", "memory.current", "memory.peak", "memory.max")):
            d = Path(root + path)
            if (d / usage).exists():
                for key, name in (("cgroup", usage), ("cgroup_peak", peak), ("cgroup_limit", limit)):
                    text = (d / name).read_text().strip() if (d / name).exists() else ""
                    if text.isdigit():
                        figures[key] = int(text)
                break
        return figures


@pytest.fixture(scope="module")
def pod(container_backend, built_image, tmp_path_factory):
    if container_backend != "podman":
        pytest.skip(f"podman kube play needs podman; the container backend here is {container_backend}")
    p = PlayedPod(built_image[0], tmp_path_factory.mktemp("k8s"))
    try:
        seconds = p.play()
        print(f"\n{built_image[0]} as a pod: /readyz answered 200 {seconds:.1f} s after `podman kube play`")
        yield p
    finally:
        p.down()


@pytest.fixture(scope="module")
def client(pod):
    with httpx.Client(base_url=pod.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def manifest(built_image) -> dict:
    return export_manifest(built_image[2])


@pytest.fixture(scope="module")
def sessions(built_image, manifest) -> dict:
    return onnx_sessions(built_image[2], manifest)


def test_probe_paths_answer(pod, client):
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = pod.container[probe]["httpGet"]
        assert get["port"] == "http", f"{probe} should use the named port"
        r = client.get(get["path"])
        assert r.status_code == 200, f"{probe} {get['path']}: {r.status_code} {r.text}"


@pytest.mark.parametrize("upload", ["fashion_png", "product_photo"])
def test_every_model_labels_as_the_local_onnx_run(client, manifest, sessions, upload, request):
    check_labels(client, manifest, sessions, request.getfixturevalue(upload))


def test_runs_as_the_manifest_says(pod):
    security = {**pod.deployment["spec"]["template"]["spec"]["securityContext"], **pod.container["securityContext"]}
    uid = pod.exec("id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() == str(security["runAsUser"]) != "0", uid.stdout + uid.stderr
    written = pod.exec("touch", "/home/bentoml/bento/written")
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stdout + written.stderr
    for mount in pod.container["volumeMounts"]:   # the emptyDirs are where it may write
        assert pod.exec("touch", f"{mount['mountPath']}/written").returncode == 0, mount
    status = pod.exec("cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert int(fields["CapEff"].strip(), 16) == 0 and int(fields["CapPrm"].strip(), 16) == 0, status
    assert fields["NoNewPrivs"].strip() == "1", status
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True


def test_one_worker_per_cpu_of_the_limit(pod):
    limit = math.ceil(quantity_cpus(pod.container["resources"]["limits"]["cpu"]))
    env = pod.exec("cat", "/proc/1/environ").stdout.split("\0")
    assert f"FASHION_ZOO_WORKERS={limit}" in env, [e for e in env if e.startswith("FASHION_ZOO")]
    assert len(pod.memory()["worker_rss"]) == limit
    assert f"{limit} worker process(es)" in pod.logs()


def test_metrics_answer(client, fashion_png):
    assert classify(client, fashion_png).status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200 and "bentoml_service_request_total" in r.text, r.text[:1000]


def test_memory_after_load_fits_the_limit(pod, fashion_png):
    """REQUESTS requests (Fashion-MNIST PNGs and photos, one model and all) from 8 threads; then
    the pod's memory must stay under its limit. Figures are printed for the README."""
    limit = quantity_bytes(pod.container["resources"]["limits"]["memory"])
    rest = pod.memory()
    bodies = [(fashion_png, "auto"), (fashion_png, "all")] + [(p, "auto") for p in product_photos(4)]
    failures, lock = [], threading.Lock()

    def load(k: int) -> None:
        with httpx.Client(base_url=pod.url, timeout=60) as c:
            for i in range(k, REQUESTS, 8):
                data, model = bodies[i % len(bodies)]
                r = classify(c, data, model=model)
                if r.status_code != 200:
                    with lock:
                        failures.append(r.status_code)

    start = time.monotonic()
    threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    loaded = pod.memory()
    mib = lambda b: f"{b / 2 ** 20:.0f} MiB"  # noqa: E731
    print(f"\npod memory, limit {mib(limit)} ({loaded['processes']} processes): at rest RSS {mib(rest['rss'])}, "
          f"PSS {mib(rest['pss'])}" + (f", cgroup {mib(rest['cgroup'])}" if "cgroup" in rest else "")
          + f"; after {REQUESTS:,} requests ({REQUESTS / seconds:.0f}/s) RSS {mib(loaded['rss'])}, PSS {mib(loaded['pss'])}"
          + (f", cgroup {mib(loaded['cgroup'])} (peak {mib(loaded.get('cgroup_peak', 0))})" if "cgroup" in loaded else "")
          + f"; workers {', '.join(mib(r) for r in loaded['worker_rss'])}")
    assert not failures, f"{len(failures)} of {REQUESTS} requests failed: {sorted(set(failures))}"
    # Then the costliest request the service accepts (one image at its pixel limit, every model) on
    # every worker at once: the limit must hold that too, or a valid request gets the pod killed.
    from service.imaging import MAX_REQUEST_PIXELS

    big = gradient_png(math.isqrt(MAX_REQUEST_PIXELS))
    workers = len(loaded["worker_rss"])
    statuses = []

    def costliest() -> None:
        with httpx.Client(base_url=pod.url, timeout=120) as c:
            statuses.append(classify(c, big, model="all").status_code)

    threads = [threading.Thread(target=costliest) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worst = pod.memory()
    print(f"  then {workers} x one {math.isqrt(MAX_REQUEST_PIXELS)}^2 PNG with every model at once: "
          f"RSS {mib(worst['rss'])}" + (f", cgroup peak {mib(worst['cgroup_peak'])}" if "cgroup_peak" in worst else "")
          + f"; workers {', '.join(mib(r) for r in worst['worker_rss'])}")
    assert statuses == [200] * workers, statuses
    if "cgroup_limit" in loaded:
        assert loaded["cgroup_limit"] == limit, "podman did not apply the manifest's memory limit"
    for figures in (loaded, worst):
        assert figures["rss"] < limit and figures.get("cgroup_peak", 0) < limit, (figures, limit)


def test_shutdown_finishes_requests_in_flight(pod):
    """Last (it stops the pod): what the kubelet does when the pod is deleted, with traffic. While
    the preStop command runs, new connections are still served (in a cluster the endpoint is being
    removed meanwhile); then new requests stop, as they do once no Service routes to the pod, and
    SIGTERM comes while requests are in flight. None of them may fail."""
    photos = product_photos(32)   # ~0.3 s a request here: some are surely in flight at SIGTERM
    files = [("image", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    stop, lock, done = threading.Event(), threading.Lock(), []   # done: (start, end, outcome)

    def load() -> None:
        with httpx.Client(base_url=pod.url, timeout=60) as c:   # keep-alive, as a client would
            while not stop.is_set():
                start = time.monotonic()
                try:
                    outcome = c.post("/classify/batch", params={"model": "all"}, files=files).status_code
                except httpx.HTTPError as e:
                    outcome = f"{type(e).__name__}: {e}"
                with lock:
                    done.append((start, time.monotonic(), outcome))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1)
    pre_stop = pod.container["lifecycle"]["preStop"]["exec"]["command"]
    grace = pod.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pid = int(pod.podman("inspect", "--format", "{{.State.Pid}}", pod.name).stdout)
    pause_start = time.monotonic()
    assert pod.exec(*pre_stop).returncode == 0
    pause = time.monotonic() - pause_start
    stop.set()
    stopped = time.monotonic()   # no request starts after this
    os.kill(pid, signal.SIGTERM)   # what `podman kill` does, without its CLI's start-up between
    sigterm = time.monotonic()     # the last request started and the signal
    deadline = pause_start + grace   # the kubelet's SIGKILL: the grace period counts the preStop pause too
    refused = None
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{pod.url}/livez", timeout=1)
        except httpx.ConnectError:
            refused = time.monotonic() - sigterm
            break
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if Path(f"/proc/{pid}").exists():   # as the kubelet does when the grace period is over
        pod.podman("kill", "--signal", "KILL", pod.name)
    exited = time.monotonic() - sigterm
    for t in threads:
        t.join(timeout=60)
    status = pod.podman("wait", pod.name, timeout=60).stdout.strip()
    in_pause = [d for d in done if pause_start <= d[0] < stopped]
    in_flight = [d for d in done if d[0] < stopped and d[1] > sigterm]
    lost = [d for d in done if d[2] != 200]
    print(f"\nshutdown: {len(done)} requests, {len(in_pause)} started during the {pause:.1f} s preStop pause, "
          f"{len(in_flight)} in flight at SIGTERM, {len(lost)} lost; new connections refused "
          + (f"{refused:.2f} s after SIGTERM" if refused is not None else "never")
          + f"; exited with {status} after {exited:.1f} s")
    assert not lost, f"{len(lost)} requests failed: {[d[2] for d in lost][:5]}"
    assert in_pause, "no request was served during the preStop pause"
    assert in_flight, "no request was in flight at SIGTERM: the test proved nothing"
    assert refused is not None, f"still accepting connections at the end of the {grace} s grace period"
    assert status == "0", f"exit status {status} (137: killed at the end of the grace period):\n{pod.logs()[-3000:]}"
