"""What a benchmark ran on, for its JSON line: figures from machines with other CPUs differ.

The int8 encoder's speed depends most on the CPU's int8 dot-product instructions: with VNNI
(AVX512-VNNI or AVX-VNNI) onnxruntime multiplies int8 in one instruction, without it in
several. Measured with `kefu bench nlu --threads 1` on 2-vCPU AMD EPYC VMs: 8.5 CPU ms per text
at batch 1 without VNNI, 5.3 with AVX512-VNNI (docs/benchmarks.md, "Encoder speed").
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import psutil

# /proc/cpuinfo flag -> the name people know it by
INT8_DOT_PRODUCT_FLAGS = {"avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX"}


def machine() -> dict[str, Any]:
    """CPU count and model, memory, int8 instructions, Python, 1-minute load average."""
    flags = cpu_flags()
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": cpu_model(),
        "int8_dot_product": [
            name for flag, name in INT8_DOT_PRODUCT_FLAGS.items() if flag in flags
        ],
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _cpuinfo_field(name: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing, e.g. macOS)."""
    return set((_cpuinfo_field("flags") or "").split())
