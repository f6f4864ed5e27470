"""The machine a benchmark ran on, and its theoretical fp32 peak.

Peak multiply-accumulates per second = cores x clock x FMA lanes x FMA units, with the lanes read
from the CPU flags (avx512f: 16 fp32 lanes, avx2+fma: 8, otherwise 4) and two FMA units per core
assumed (true of current x86 server cores: Intel since Skylake-SP Gold, AMD since Zen). The clock is
the one the kernel reports (the nominal clock in a VM, which cannot see turbo).
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from service.workers import cpu_cores

FMA_UNITS = 2  # assumed, see the module docstring
FP32_LANES = ((16, "avx512f", {"avx512f"}), (8, "avx2+fma", {"avx2", "fma"}), (4, "sse", set()))  # by CPU flags


def _fields(text: str) -> dict[str, str]:
    """'key: value' lines (/proc/cpuinfo, lscpu) -> {key: value}, the first of each key."""
    out: dict[str, str] = {}
    for key, _, value in (line.partition(":") for line in text.splitlines()):
        out.setdefault(key.strip(), value.strip())
    return out


def _lscpu() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def provider(lscpu: dict[str, str]) -> str:
    """Who provides the machine, as far as the guest can tell."""
    vendor = " ".join(x for x in (_read("/sys/class/dmi/id/sys_vendor"),
                                  _read("/sys/class/dmi/id/product_name")) if x)
    hyper = lscpu.get("Hypervisor vendor", "")
    if "firecracker" in _read("/proc/cmdline"):
        hyper = f"{hyper or 'KVM'} (Firecracker microVM)"
    parts = [p for p in (vendor, f"{hyper} guest" if hyper else "") if p]
    return ", ".join(parts) or "bare metal or unknown"


def describe() -> dict[str, Any]:
    """Cores, CPU model, clock, SIMD, provider, software versions, load, date."""
    cpu, ls = _fields(_read("/proc/cpuinfo")), _fields(_lscpu())
    flags = set(cpu.get("flags", "").split())
    cores = cpu_cores()
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    ghz = int(max_khz) / 1e6 if max_khz.isdigit() else float(cpu.get("cpu MHz") or 0) / 1000
    lanes, isa = next((n, isa) for n, isa, needs in FP32_LANES if needs <= flags)
    peak = cores * ghz * 1e9 * lanes * FMA_UNITS
    out: dict[str, Any] = {
        "cores": cores,
        "cpu_model": ls.get("Model name") or cpu.get("model name") or platform.processor() or "unknown",
        "cpu_family": cpu.get("cpu family"), "cpu_model_number": cpu.get("model"),
        "ghz": round(ghz, 3) if ghz else None,
        "simd": isa,
        "provider": provider(ls),
        "peak_macs_per_s": peak or None,
        "peak_assumption": (f"{cores} cores x {ghz:.2f} GHz x {lanes} fp32 FMA lanes ({isa}) x "
                            f"{FMA_UNITS} FMA units (assumed) = {peak / 1e9:.0f} G multiply-accumulates/s"),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "others_cores_at_start": others_now(),
    }
    for mod in ("torch", "torchvision", "onnxruntime", "bentoml"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # an absent optional package is simply not listed
            pass
    return out


def short(m: dict[str, Any]) -> str:
    """One line for report headers."""
    return f"{m['cores']} cores {m['cpu_model']} @ {m['ghz']} GHz ({m['simd']}), {m['provider']}"


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) of every process (gone or unreadable ones left out)."""
    import psutil

    return {p.pid: (p.info["ppid"], p.info["cpu_times"].user + p.info["cpu_times"].system)
            for p in psutil.process_iter(["ppid", "cpu_times"]) if p.info["cpu_times"] is not None}


def _mine() -> set[int]:
    """This process and its descendants."""
    import psutil

    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.children(recursive=True))}


class OthersCPU:
    """Cores used by processes outside this process's tree since creation: other people's work
    on the machine. A lower bound: a process that starts and ends in between is not seen."""

    def __init__(self) -> None:
        self.t0, self.before, self.mine = time.monotonic(), _processes(), _mine()

    def cores(self) -> float:
        after, elapsed = _processes(), time.monotonic() - self.t0
        mine = self.mine | _mine()
        used = sum(after[p][1] - self.before[p][1] for p in after
                   if p in self.before and p not in mine and after[p][0] == self.before[p][0])
        return round(max(0.0, used) / elapsed, 2) if elapsed > 0 else 0.0


def others_now(seconds: float = 1.0) -> float:
    """Cores other processes use right now (sampled over `seconds`)."""
    probe = OthersCPU()
    time.sleep(seconds)
    return probe.cores()
