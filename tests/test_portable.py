"""The portable training mode (training/portable.py): weights that no switch selecting vector code
changes, and (marked `emulated`, `make portable-check`) the same bits on emulated older processors.

Each run is the real command, `python -m training.portable`, Adam steps of a registry model on seeded
synthetic images, printing the sha256 of the weights: 50 steps natively (a switch that changes a
step's rounding changes the weights from its first step on), the documented 200 under emulation."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import portable

REPO = Path(__file__).resolve().parents[1]
STEPS, EMULATED_STEPS = 50, 200
# Every switch that selects vector code, each set to a value other than the machine's own choice;
# one process per set (the switches are read when the libraries load): switches of different
# libraries together, MKL's two apart (MKL_CBWR would override MKL_ENABLE_INSTRUCTIONS).
SWITCH_SETS = [{}, {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "DNNL_MAX_CPU_ISA": "SSE41"},
               {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"},
               {"MKL_CBWR": "AVX2"}]


def fingerprints(models: str, *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None,
                 timeout: int = 300, steps: int = STEPS) -> list[dict]:
    """One process training `models` (comma-separated), one result each."""
    base = {k: v for k, v in os.environ.items() if k not in (*portable.ENV, *portable.SWITCHES)}
    out = subprocess.run([*(prefix or []), sys.executable, "-m", "training.portable", "--model", models,
                          "--steps", str(steps), *args], cwd=REPO, env={**base, **(env or {})},
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.strip().splitlines()]


def fingerprint(model: str, *args: str, **kwargs) -> dict:
    (run,) = fingerprints(model, *args, **kwargs)
    return run


def test_no_vector_switch_changes_the_portable_weights():
    """Three models under every set of switches, one process per set."""
    runs = [r for env in SWITCH_SETS for r in fingerprints("baseline,batchnorm,dropout", env=env)]
    assert {r["mode"] for r in runs} == {"portable"}
    for model in ("baseline", "batchnorm", "dropout"):
        mine = [r for r in runs if r["model"] == model]
        assert len(mine) == len(SWITCH_SETS) and len({r["sha256"] for r in mine}) == 1, \
            [(r["env"], r["sha256"][:16]) for r in mine]


def test_the_same_switches_change_the_native_weights():
    """The check above can fail: natively, every set of switches gives other bits (where the
    processor has the vector units they choose between)."""
    flags = portable.processor()["flags"]
    if "avx2" not in flags:
        pytest.skip("this processor has no AVX2: the libraries have no other code to choose")
    # Without AVX-512 a set can be the processor's own choices: ATen's plain code against its AVX2 then.
    sets = SWITCH_SETS if "avx512f" in flags else [{"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2"}]
    runs = [fingerprint("baseline", "--native", env=env) for env in sets]
    assert len({r["sha256"] for r in runs}) == len(sets), [(r["env"], r["sha256"][:16]) for r in runs]


def test_correctly_rounded_sqrt():
    x = torch.from_numpy(np.random.default_rng(0).random(100_000, dtype=np.float32) * 4)
    exact = torch.sqrt(x.double()).float()  # double rounding is exact for sqrt (53 >= 2 * 24 + 2)
    assert torch.equal(portable.correctly_rounded_sqrt(x), exact)


def test_portable_adam_is_torch_adam_but_for_the_last_bit_of_the_square_root():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(30, 10), torch.nn.Linear(30, 10)
    b.load_state_dict(a.state_dict())
    opts = [portable.make_optimizer(a.parameters(), 1e-3, portable=False),
            portable.make_optimizer(b.parameters(), 1e-3, portable=True)]
    for step in range(50):
        x = torch.randn(8, 30)
        for model, opt in zip((a, b), opts):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert set(opts[1].state_dict()["state"][0]) == set(opts[0].state_dict()["state"][0])  # checkpoints resume


def test_processor_is_recorded():
    info = portable.processor()
    assert info["machine"] and isinstance(info["flags"], list)
    assert info["machine"] in portable.describe_processor(info)


def test_a_portable_step_without_its_environment_is_a_clear_error(tmp_path, fmnist_dir):
    """In a process started without the environment (this one), training in the portable mode
    refuses in one line instead of training weights that are not portable."""
    from training.config import TrainConfig
    from training.train import train
    from zoo.errors import ZooError

    if portable.env_ready():
        pytest.skip("this test process already has the portable environment")
    with pytest.raises(ZooError, match="ATEN_CPU_CAPABILITY=default"):
        train(TrainConfig(model="baseline", epochs=1, batch_size=64, portable=True, data_dir=str(fmnist_dir),
                          artifacts=str(tmp_path)), quiet=True)


@pytest.mark.emulated
@pytest.mark.parametrize("cpu", ["Haswell", "Nehalem"])
def test_an_emulated_older_processor_trains_the_same_bits(cpu):
    """qemu-user runs the same Python on an emulated processor: Haswell has no AVX-512, Nehalem
    no AVX at all. Slow (about 1.6 s a step): `make portable-check`, not the default suite."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-user is not installed (apt-get install qemu-user)")
    native = fingerprint("baseline", steps=EMULATED_STEPS)
    # qemu-user would run a re-executed process natively: give the mode's environment up front.
    emulated = fingerprint("baseline", env=portable.ENV, prefix=[qemu, "-cpu", cpu], timeout=3600,
                           steps=EMULATED_STEPS)
    assert not emulated["cpuid"]["avx512"] and emulated["cpuid"]["avx2"] == (cpu == "Haswell")
    assert emulated["sha256"] == native["sha256"], (cpu, emulated["ms_per_step"])


def test_training_in_the_portable_mode_records_it_and_the_processor(tmp_path, fmnist_dir):
    """`python -m training.train --portable 1` re-runs itself with the mode's environment; the
    checkpoint says which mode and processor made it, and the same command gives the same bits."""
    from training.checkpoint import load_checkpoint

    def run(artifacts: Path) -> dict:
        out = subprocess.run([sys.executable, "-m", "training.train", "--model", "lesskernelsize", "--epochs", "1",
                              "--batch-size", "64", "--portable", "1", "--data-dir", str(fmnist_dir),
                              "--artifacts", str(artifacts)], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return load_checkpoint(artifacts / "checkpoints" / "lesskernelsize.pt")

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a["config"]["portable"] and a["config_identity"]["portable"] is True
    assert a["trained_on"] == {"mode": "portable", "processor": portable.processor()}
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
