"""The machine: its measured GEMM peak, its description, and the peak memory of one step.

Peak memory on CPU is the process's resident-set high-water mark (``VmHWM``), measured in a fresh
subprocess per implementation: after a warm-up step (which allocates the optimizer state), freed
heap is returned to the OS (``malloc_trim``), the high-water mark is reset (``clear_refs``), and
one step runs. The step's memory is the high-water mark minus the resident set just before it.
On a GPU it is ``torch.cuda.max_memory_allocated`` over the step minus the allocation before it.
The probes themselves (what runs in the subprocess) are in :mod:`experiments.bench.probes`.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

MIB = 1024 * 1024


def gemm_peak(size: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """Best float32 matmul throughput of ``size``^3 over ``repeats`` runs, in FLOP/s."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def machine() -> dict[str, str]:
    """CPU model, cores, threads and library versions, for the report."""
    import lightning
    import transformers

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "trl": trl_version,
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
    }


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def measure(run, device: str) -> dict[str, float]:
    """Memory of ``run()`` (which returns seconds): its peak and the peak minus the memory just
    before it (``step_mib``), in MiB, after freed heap went back to the OS."""
    _release_heap()
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        seconds = run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss("VmRSS")
        seconds = run()
        peak = _rss("VmHWM")
    return {"peak_mib": peak / MIB, "step_mib": (peak - before) / MIB, "seconds": seconds}


def step_memory(step, device: str) -> dict[str, float]:
    """Run ``step(0)`` (warm-up), then measure ``step(1)``: peak and step memory in MiB."""
    step(0)
    return measure(lambda: step(1), device)


def available_mib() -> float:
    """``MemAvailable`` of ``/proc/meminfo`` in MiB (inf where there is none)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def probe_in_subprocess(probe: str, args: list[str], timeout: float = 1200) -> dict[str, float]:
    """Run ``python experiments/bench --memory-probe PROBE ARGS`` in a fresh process and parse
    its JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent), "--memory-probe", probe, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {probe} {shlex.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
