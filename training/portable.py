"""The portable training mode: the same weights, bit for bit, on every x86-64 processor.

PyTorch's CPU kernels choose their vector code from the processor, and each choice rounds the same
arithmetic differently. This mode pins each choice that changed the weights of a baseline run
(docs/training.md, "Weights and the processor", has the table and the proof): ATen's kernels
(``ATEN_CPU_CAPABILITY=default``), oneDNN and NNPACK (off: convolutions become im2col + MKL's
GEMM), MKL's GEMM (``MKL_CBWR=COMPATIBLE``), and Adam's square root: MKL's VML ``sqrt`` is within
1 ulp, not correctly rounded, and picks its code by the CPU (91 of 12,800 square roots 1 ulp off on
an Intel Xeon, exact under qemu), so `Adam` below takes it with NumPy (the IEEE instruction).

The environment variables must be set before torch is imported, so a command asked for the portable
mode re-runs itself with them (`reexec`). The mode costs about 1.8x the native time per epoch, so
`make train-all` trains natively and `make publish-weights` / `make verify-weights` use this mode.
"""
from __future__ import annotations

import functools
import os
import platform
import sys
from typing import Any

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.registry import get_entry

ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
# Environment variables that select vector code; the portable mode's weights must not depend on them.
SWITCHES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA")
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


def mode_name(portable: bool) -> str:
    return "portable" if portable else "native"


def env_ready() -> bool:
    """Whether this process started with the portable mode's environment."""
    return all(os.environ.get(k) == v for k, v in ENV.items())


def reexec(module: str) -> None:
    """Run `python -m module` with this process's arguments again, in this process, with the portable
    mode's environment; returns only when the environment was already right."""
    if env_ready():
        return
    os.environ.update(ENV)
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])


def apply() -> None:
    """The run-time switches of the portable mode, in this process (the environment is `reexec`'s)."""
    import torch

    if not env_ready():
        missing = " ".join(f"{k}={v}" for k, v in ENV.items())
        raise ZooError(f"the portable mode needs {missing} set before torch is imported; run the "
                       f"`python -m training...` command (it sets them itself) or set them yourself")
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(1)


def processor() -> dict[str, Any]:
    """What ran the training: vendor, model name and the vector extensions that select code."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n")[0]  # the first processor's
    except OSError:  # not Linux: the platform module's words are what there is
        block = ""
    cpu = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}
    return {"machine": platform.machine(), "vendor": cpu.get("vendor_id", ""),
            "model": cpu.get("model name") or platform.processor() or "",
            "flags": [f for f in _FLAGS if f in cpu.get("flags", "").split()]}


def describe_processor(info: dict[str, Any] | None) -> str:
    """One line: 'GenuineIntel Intel(R) Xeon(R) Processor (x86_64: avx2 fma avx512f)'."""
    if not info:
        return "an unrecorded processor"
    return f"{info.get('vendor') or '?'} {info.get('model') or '?'} ({info.get('machine')}: " \
           f"{' '.join(info.get('flags') or []) or 'no vector extensions listed'})"


def correctly_rounded_sqrt(t):
    """sqrt of a float tensor, correctly rounded (IEEE) whatever the processor (see the docstring)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.sqrt(t.detach().numpy()))


def make_optimizer(params, lr: float, portable: bool):
    """Adam with PyTorch's defaults (betas 0.9/0.999, eps 1e-8): torch's own, or `Adam` below."""
    import torch

    return _adam_class()(params, lr=lr) if portable else torch.optim.Adam(params, lr=lr, foreach=True)


def layout(portable: bool):
    """The memory format a model trains in. Natively channels-last: oneDNN's kernels for these small
    convolutions are faster in it (one thread, batch 32, per step: colour 22%, numfilters 20%,
    baseline 10% less time). In the portable mode the default layout: its convolutions are pinned."""
    import torch

    return torch.contiguous_format if portable else torch.channels_last


@functools.cache  # the class is built on first use: importing this module does not import torch
def _adam_class():
    import torch

    class Adam(torch.optim.Adam):
        """torch.optim.Adam (no weight decay, no AMSGrad; the same state, so checkpoints resume)
        whose denominator's square root is correctly rounded on every processor."""

        @torch.no_grad()
        def step(self, closure=None):
            assert closure is None, "training never passes a closure"
            for group in self.param_groups:
                beta1, beta2 = group["betas"]
                lr, eps = group["lr"], group["eps"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = torch.tensor(0.0)
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] += 1
                    step = state["step"].item()
                    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                    exp_avg.lerp_(p.grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    denom = correctly_rounded_sqrt(exp_avg_sq).div_((1 - beta2 ** step) ** 0.5).add_(eps)
                    p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** step))

    return Adam


def fingerprint(model_name: str, steps: int, batch_size: int = 32, portable: bool = True,
                data_dir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Train registry model `model_name` for `steps` optimiser steps, one thread, with training.train's
    epoch loop, and return the sha256 of its weights: real Fashion-MNIST training images from
    `data_dir`, else seeded synthetic ones (integers from NumPy's PCG64, which no processor changes)."""
    import time

    import numpy as np
    import torch

    from zoo.registry import get_model

    from .checkpoint import weights_sha256
    from .data import Split
    from .train import train_epoch

    if portable:
        apply()
    torch.set_num_threads(1)
    n = steps * batch_size
    if data_dir:
        from .data.fashion_mnist import load_fashion_mnist

        train = load_fashion_mnist(data_dir)["train"]
        x, y = train.x[:n], train.y[:n]
    else:
        rng = np.random.default_rng(seed)
        x = torch.from_numpy(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)).float().div_(127.5).sub_(1.0)
        y = torch.from_numpy(rng.integers(0, 10, n))
    memory_format = layout(portable)
    torch.manual_seed(seed)
    model = get_model(model_name).to(memory_format=memory_format)
    opt = make_optimizer(model.parameters(), 1e-3, portable)
    t0 = time.perf_counter()
    loss, _ = train_epoch(model, opt, Split(x, y), batch_size, torch.Generator().manual_seed(seed), None,
                          memory_format=memory_format)
    seconds = time.perf_counter() - t0
    # What the processor says of itself through CPUID (under qemu-user /proc/cpuinfo is the host's).
    cpuid = {"avx2": torch.cpu._is_avx2_supported(), "avx512": torch.cpu._is_avx512_supported()}
    return {"model": model_name, "steps": steps, "mode": mode_name(portable),
            "sha256": weights_sha256(model.state_dict()), "cpuid": cpuid, "loss": loss,
            "ms_per_step": 1000 * seconds / steps, "processor": processor(),
            "data": data_dir or "synthetic", "env": {k: os.environ.get(k) for k in (*ENV, *SWITCHES)}}


@cli
def main() -> None:
    """python -m training.portable [--model baseline[,batchnorm...]] [--steps 300] [--native]: one line
    of JSON per model with the sha256 of its weights after `--steps` Adam steps (the check of
    docs/training.md); several models share one process, the switches being read when torch loads."""
    import json

    p = ArgumentParser(prog="python -m training.portable", description=main.__doc__)
    p.add_argument("--model", default="baseline", help="a registry model, or several separated by commas")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir", default=None, help="real Fashion-MNIST (default: synthetic images)")
    p.add_argument("--native", action="store_true", help="the native mode instead (no re-run, no switches)")
    args = p.parse_args()
    if not args.native:
        # Only the portable mode's own settings are forced; the other switches stay as the caller set them.
        reexec("training.portable")
    names = args.model.split(",")
    for name in names:
        get_entry(name)  # every name checked before the first model trains
    for name in names:
        print(json.dumps(fingerprint(name, args.steps, args.batch_size, not args.native, args.data_dir)))


if __name__ == "__main__":
    main()
