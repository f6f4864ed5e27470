"""The served zoo: manifest, verified ONNX files, one onnxruntime session per model, on GPU when
one can really run. Torch-free. `load_zoo(path)` reads a `fashion-zoo` model directory, checks
every ONNX file's sha256 against its manifest, creates the sessions once and runs each on a zero
image; `Zoo.logits` runs a model on a batch.
"""
from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.auto import AUTO
from zoo.manifest import ZooLoadError, check_sha256, read_verified
from zoo.spec import input_shape

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
DEVICES = ("auto", "cuda", "cpu")
# One intra-op thread per run: the models are tiny, and parallelism comes from concurrent requests.
CPU_THREADS = 1

logger = logging.getLogger("bentoml.fashion_zoo")


@dataclass
class Device:
    providers: list[Any]   # what onnxruntime is asked for, best first
    reason: str            # why, in words, for the start-up log line and GET /models
    runtime: dict[str, Any] = field(default_factory=dict)  # which onnxruntime build, see `runtime_info`


def runtime_info() -> dict[str, Any]:
    """Which onnxruntime this is: the pip distribution that installed it (`onnxruntime` for the CPU
    build, `onnxruntime-gpu` for the CUDA one; both import as `onnxruntime`), its version and the
    providers it was built with. Said at start-up and in GET /models, so an image says what it got."""
    import importlib.metadata

    import onnxruntime as ort

    dists = importlib.metadata.packages_distributions().get("onnxruntime") or ["unknown"]
    return {"package": ", ".join(sorted(set(dists))), "version": ort.__version__,
            "available_providers": ort.get_available_providers()}


@dataclass
class ServedModel:
    name: str
    entry: dict[str, Any]  # the manifest entry
    session: Any           # onnxruntime.InferenceSession
    provider: str          # the provider the session actually runs on
    input_name: str
    output_name: str

    @property
    def classes(self) -> list[str]:
        return self.entry["classes"]

    @property
    def preprocess(self) -> dict[str, Any]:
        return self.entry["preprocess"]

    @functools.cached_property
    def preprocess_key(self) -> str:
        """Equal for models that preprocess alike, so an image is preprocessed once for them."""
        return json.dumps(self.preprocess, sort_keys=True)


@dataclass
class Zoo:
    tag: str
    manifest: dict[str, Any]
    models: dict[str, ServedModel] = field(default_factory=dict)
    device: Device | None = None
    _ready: bool = field(default=False, repr=False)

    @property
    def default(self) -> str:
        """The default single model (the best Fashion-MNIST model); `model=all` answers name it."""
        return self.manifest["default"]

    @property
    def version(self) -> str:
        """The served zoo's version: its store tag's (fashion-zoo:<version>)."""
        return self.tag.rpartition(":")[2]

    @functools.cached_property
    def auto(self) -> dict[str, Any]:
        """model=auto, what a request that names no model gets: the manifest's rule and two models
        (zoo/auto.py); a manifest written before auto existed gets them from the same function."""
        from zoo.auto import auto_entry
        from zoo.registry import photo_models

        return self.manifest.get("auto") or auto_entry(self.manifest["models"], photo_models())

    @property
    def ready(self) -> bool:
        """Every model of the manifest is loaded (asked on every request; models are never unloaded,
        so once true it is remembered)."""
        if not self._ready:
            self._ready = bool(self.models) and set(self.models) == set(self.manifest["models"])
        return self._ready

    def logits(self, name: str, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 1, H, W) -> float32 logits (N, classes) from model `name`."""
        m = self.models[name]
        # The output by name: run(None, ...) would list the session's outputs again on every call.
        return m.session.run([m.output_name], {m.input_name: batch})[0]

    def describe(self) -> dict[str, Any]:
        """GET /models: every model's manifest entry and the provider it runs on."""
        return {
            "store_tag": self.tag,
            "default": AUTO,
            "auto": self.auto,
            "created": self.manifest.get("created"),
            "opset": self.manifest.get("opset"),
            "device_reason": self.device.reason if self.device else None,
            "runtime": self.device.runtime if self.device else None,
            "models": {n: {**m.entry, "provider": m.provider} for n, m in self.models.items()},
        }


def _cuda_devices() -> tuple[int, str]:
    """(number of CUDA devices the driver sees, why none) without importing any CUDA library
    but the driver's own."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no NVIDIA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0:
        return 0, "the NVIDIA driver found no usable GPU (cuInit failed)"
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return 0, "the NVIDIA driver reports no GPU"
    return count.value, ""


def choose_device(preference: str = "auto") -> Device:
    """Which providers to ask onnxruntime for. CUDA only when this onnxruntime has it, the driver
    sees a GPU and the CUDA/cuDNN libraries load; `load_zoo` then checks each session really got it."""
    import onnxruntime as ort

    if preference not in DEVICES:
        raise ZooLoadError(f"Unknown device {preference!r}; choose one of: {', '.join(DEVICES)}")
    if preference == "cpu":
        return Device([CPU], "CPU requested (FASHION_ZOO_DEVICE=cpu)")
    why_not = ""
    if CUDA not in ort.get_available_providers():
        why_not = f"this onnxruntime build ({ort.__version__}) has no {CUDA}"
    else:
        n, why_not = _cuda_devices()
        if n:
            try:
                ort.preload_dlls()  # the CUDA and cuDNN libraries from the nvidia-* wheels
            except Exception as e:
                why_not = f"the CUDA libraries did not load ({type(e).__name__}: {e})"
    if why_not:
        if preference == "cuda":
            raise ZooLoadError(f"FASHION_ZOO_DEVICE=cuda but CUDA cannot run: {why_not}")
        return Device([CPU], f"CPU because {why_not}")
    options = {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"}  # no slow search per new batch size
    return Device([(CUDA, options), CPU], f"CUDA on {n} GPU(s) seen by the driver, GPU 0 used")


def create_session(data: bytes, device: Device, path: Path, tag: str, threads: int = CPU_THREADS):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, options, providers=device.providers)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooLoadError(f"{tag}: onnxruntime cannot load {path} ({first}); re-run `make export`") from None


def load_zoo(root: str | os.PathLike, tag: str, device: str = "auto", threads: int = CPU_THREADS) -> Zoo:
    """Verify and load every model of the zoo in `root` (a `fashion-zoo` model directory)."""
    manifest, files = read_verified(root, tag)
    return build_zoo(manifest, files, Path(root), tag, device, threads)


def build_zoo(manifest: dict[str, Any], files: dict[str, bytes], root: Path, tag: str,
              device: str = "auto", threads: int = CPU_THREADS) -> Zoo:
    """The sessions of a verified manifest and its ONNX bytes (`read_verified`) read from `root`;
    `threads`: each session's intra-op threads."""
    chosen = choose_device(device)
    chosen.runtime = runtime_info()
    zoo = Zoo(tag=tag, manifest=manifest, device=chosen)
    for name, entry in manifest["models"].items():
        data = files[name]  # the bytes checked are the bytes loaded (they may have come from afar)
        path = root / entry["onnx"]
        check_sha256(data, entry.get("sha256"), path, tag)
        session = create_session(data, chosen, path, tag, threads)
        provider = session.get_providers()[0]
        if chosen.providers[0] != CPU and provider != CUDA:
            if device == "cuda":
                raise ZooLoadError(f"{tag}: {path} did not get {CUDA} (see onnxruntime's message above)")
            # The GPU looked usable but onnxruntime fell back: say so, and use the CPU for the rest.
            chosen.providers, chosen.reason = [CPU], (f"CPU because {CUDA} failed to start "
                                                      f"(see onnxruntime's message above)")
            session = create_session(data, chosen, path, tag, threads)
            provider = session.get_providers()[0]
        inputs, outputs = session.get_inputs(), session.get_outputs()
        want_in, want_out = entry.get("input", {}).get("name"), entry.get("output", {}).get("name")
        if [i.name for i in inputs] != [want_in] or [o.name for o in outputs] != [want_out]:
            raise ZooLoadError(f"{tag}: {path} has inputs {[i.name for i in inputs]} and outputs "
                               f"{[o.name for o in outputs]}, the manifest says {want_in!r} -> "
                               f"{want_out!r}; re-run `make export`")
        served = ServedModel(name, entry, session, provider, want_in, want_out)
        probe = session.run(None, {want_in: np.zeros((1, *input_shape(entry["preprocess"])), np.float32)})[0]
        if probe.shape != (1, len(served.classes)) or not np.isfinite(probe).all():
            raise ZooLoadError(f"{tag}: {path} gave {probe.shape} logits on a test image, expected "
                               f"(1, {len(served.classes)}) finite values; re-run `make export`")
        zoo.models[name] = served
    rt = chosen.runtime
    logger.info("fashion-zoo %s: %d models (%s) on %s: %s; runtime %s %s (providers: %s)", tag,
                len(zoo.models), ", ".join(zoo.models), chosen.providers[0]
                if isinstance(chosen.providers[0], str) else chosen.providers[0][0], chosen.reason,
                rt["package"], rt["version"], ", ".join(rt["available_providers"]))
    return zoo
