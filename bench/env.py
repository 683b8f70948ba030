"""What a benchmark ran on: CPU, cores, memory, and the versions of everything that sets the speed.

Versions come from package metadata, not imports, so the benchmark's parent process never imports torch just to
print its version.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = {  # label -> distribution names to try, first found wins
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "torch": ("torch",),
    "av": ("av",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless"),
    "timm": ("timm",),
    "grad-cam": ("grad-cam",),
    "onnx": ("onnx",),
    "sonolens": ("sonolens",),
}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for label, dists in PACKAGES.items():
        out[label] = None
        for d in dists:
            try:
                out[label] = metadata.version(d)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (Linux); empty elsewhere."""
    p = Path("/proc/cpuinfo")
    if not p.is_file():
        return {}
    info: dict[str, str] = {}
    for line in p.read_text(errors="replace").splitlines():
        if not line.strip():
            if info:
                break
            continue
        k, _, v = line.partition(":")
        info.setdefault(k.strip(), v.strip())
    return info


def _mem_total_gb() -> float | None:
    p = Path("/proc/meminfo")
    if p.is_file():
        for line in p.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (ValueError, OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gb": _mem_total_gb(),
        "simd": sorted(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma") if f in flags),
        "platform": platform.platform(),
    }
