"""lm2am/cpu.py: MKL's AVX2 path is requested on AMD CPUs only, never over a user's choice."""
import os
import subprocess
import sys

from lm2am.cpu import cpu_vendor, use_mkl_avx2_on_amd


def test_amd_gets_avx2_dispatch():
    env: dict = {}
    assert use_mkl_avx2_on_amd(env, vendor="AuthenticAMD")
    assert env == {"MKL_DEBUG_CPU_TYPE": "5"}


def test_intel_and_unknown_left_alone():
    for vendor in ("GenuineIntel", ""):
        env: dict = {}
        assert not use_mkl_avx2_on_amd(env, vendor=vendor)
        assert env == {}


def test_user_value_kept():
    env = {"MKL_DEBUG_CPU_TYPE": ""}
    assert not use_mkl_avx2_on_amd(env, vendor="AuthenticAMD")
    assert env == {"MKL_DEBUG_CPU_TYPE": ""}


def test_vendor_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert cpu_vendor(str(info)) == "AuthenticAMD"
    assert cpu_vendor(str(tmp_path / "missing")) == ""


def test_import_sets_it_before_torch_runs():
    """Importing lm2am on this machine sets the variable exactly when the CPU is AMD."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    out = subprocess.run([sys.executable, "-c", "import os, lm2am; print(os.environ.get('MKL_DEBUG_CPU_TYPE', '-'))"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("5" if cpu_vendor() == "AuthenticAMD" else "-")
