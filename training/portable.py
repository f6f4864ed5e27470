"""The portable training mode: the same weights, bit for bit, on every x86-64 processor.

PyTorch's CPU kernels choose their vector code from the processor they run on, and each choice
rounds the same arithmetic differently. Measured on one baseline run (100-300 Adam steps, one
thread), each of these changes the weights on the same machine, and each is pinned here:

- ATen's own kernels (reductions, pooling, the loss): AVX-512 / AVX2 / plain code by the CPU ->
  ``ATEN_CPU_CAPABILITY=default``, the code every x86-64 processor runs;
- oneDNN's convolutions and matrix products (its ISA by the CPU) -> ``torch.backends.mkldnn``
  off; then PyTorch convolves with NNPACK, which picks kernels and blocking from the CPU ->
  ``torch.backends.nnpack`` off: convolutions become im2col + MKL's GEMM;
- MKL's GEMM (its instruction set by the CPU) -> ``MKL_CBWR=COMPATIBLE``, MKL's conditional
  bitwise-reproducibility mode for exactly this;
- the square root in Adam's denominator. PyTorch computes ``sqrt`` of a float tensor with MKL's
  vector-math library (VML, "high accuracy": within 1 ulp, not correctly rounded), which picks its
  code by the CPU and ignores ``MKL_CBWR``: 91 of 12,800 square roots were 1 ulp off on an Intel
  Xeon and exact under ``qemu-x86_64 -cpu Haswell``, so an emulated older processor trained other
  weights even with every switch above set. `Adam` below is torch.optim.Adam with that square root
  taken by NumPy, which uses the processor's IEEE square-root instruction (correctly rounded on
  every x86-64 processor, so every processor gives the same bits).

What is left to the processor: glibc's ``expf``/``logf`` (the loss's log-softmax) choose an FMA or
a plain variant by the CPU; both are within 0.502 ulp of the exact result, not correctly rounded,
so they could differ in a rare last bit. The check under emulation (docs/training.md) found no
difference between an FMA processor (Haswell), one without (Nehalem) and the native one.

The switches that are environment variables must be set before torch is imported, so a command
asked for the portable mode re-runs itself with them (`reexec`). The mode costs about 1.8x the
native mode per epoch (docs/training.md), so `make train-all` trains natively and `make
publish-weights` / `make verify-weights` use the portable mode.
"""
from __future__ import annotations

import functools
import os
import platform
import sys
from typing import Any

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError

ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
MODES = ("native", "portable")
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


def mode_name(portable: bool) -> str:
    return MODES[bool(portable)]


def env_ready() -> bool:
    """Whether this process started with the portable mode's environment."""
    return all(os.environ.get(k) == v for k, v in ENV.items())


def reexec(module: str, argv: list[str] | None = None) -> None:
    """Run `python -m module argv` again in this process with the portable mode's environment
    (unless it already has it). Only returns when the environment was already right."""
    if env_ready():
        return
    os.environ.update(ENV)
    os.execv(sys.executable, [sys.executable, "-m", module, *(sys.argv[1:] if argv is None else argv)])


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
    info = {"machine": platform.machine(), "vendor": "", "model": platform.processor() or ""}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id":
                    info["vendor"] = value
                elif key == "model name":
                    info["model"] = value
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the platform module's words are what there is
        pass
    info["flags"] = [f for f in _FLAGS if f in flags]
    return info


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
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
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
            return loss

    return Adam


def fingerprint(model_name: str, steps: int, batch_size: int = 32, portable: bool = True,
                data_dir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Train registry model `model_name` for `steps` optimiser steps, one thread, exactly as
    `training.train` does (same optimizer, same loss, same layout), and return the sha256 of its weights: real
    Fashion-MNIST training images from `data_dir`, else seeded synthetic ones (integers from
    NumPy's PCG64, which no processor changes)."""
    import hashlib
    import time

    import numpy as np
    import torch

    from zoo.registry import get_model

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
    model.train()
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        batch = x[i:i + batch_size].contiguous(memory_format=memory_format)
        loss = torch.nn.functional.cross_entropy(model(batch), y[i:i + batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    # What the processor says of itself through CPUID (under qemu-user /proc/cpuinfo is the host's).
    cpuid = {"avx2": torch.cpu._is_avx2_supported(), "avx512": torch.cpu._is_avx512_supported()}
    return {"model": model_name, "steps": steps, "mode": mode_name(portable), "sha256": digest.hexdigest(),
            "cpuid": cpuid,
            "loss": loss.item(), "ms_per_step": 1000 * seconds / steps, "processor": processor(),
            "data": data_dir or "synthetic", "env": {k: os.environ.get(k) for k in (*ENV, *SWITCHES)}}


# Environment variables that select vector code; the portable mode's weights must not depend on them.
SWITCHES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA")


@cli
def main() -> None:
    """python -m training.portable [--model baseline] [--steps 300] [--native]: one line of JSON
    with the sha256 of the weights after `--steps` Adam steps (the check of docs/training.md)."""
    import json

    p = ArgumentParser(prog="python -m training.portable", description=main.__doc__)
    p.add_argument("--model", default="baseline")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir", default=None, help="real Fashion-MNIST (default: synthetic images)")
    p.add_argument("--native", action="store_true", help="the native mode instead (no re-run, no switches)")
    args = p.parse_args()
    if not args.native:
        # Only the portable mode's own settings are forced; the other switches stay as the caller set them.
        reexec("training.portable")
    print(json.dumps(fingerprint(args.model, args.steps, args.batch_size, not args.native, args.data_dir)))


if __name__ == "__main__":
    main()
