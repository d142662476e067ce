"""CPU math-library settings that lm2am applies when it is imported.

torch 1.13's wheels bundle MKL 2020, whose dispatcher takes its slow generic code path on
CPUs that do not report Intel as vendor: on an AMD EPYC a float32 matmul of the AM's output
layer (1900 x 384 x 2000) runs in 136 ms instead of 36 ms. ``MKL_DEBUG_CPU_TYPE=5`` makes
that MKL use its AVX2 kernels. MKL reads the variable at its first call, so setting it
when lm2am is imported is early enough for every stage script, test and benchmark.

A value already in the environment is kept (set ``MKL_DEBUG_CPU_TYPE=`` to keep MKL's own
choice); Intel CPUs are left alone.
"""
from __future__ import annotations

import os
from typing import MutableMapping, Optional


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """Return the first ``vendor_id`` of ``cpuinfo`` ("" when it cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return ""
    return ""


def use_mkl_avx2_on_amd(environ: MutableMapping[str, str] = os.environ,
                        vendor: Optional[str] = None) -> bool:
    """Set ``MKL_DEBUG_CPU_TYPE=5`` on AMD CPUs unless the variable is already set.

    Returns True when the variable was set by this call.
    """
    if "MKL_DEBUG_CPU_TYPE" in environ:
        return False
    if (cpu_vendor() if vendor is None else vendor) != "AuthenticAMD":
        return False
    environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return True
