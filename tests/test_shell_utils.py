"""utils/parse_options.sh and the local job runner utils/run.sh (Kaldi's interface)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import REPO


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True)


def test_parse_options_sets_and_rejects(tmp_path: Path):
    po = REPO / "utils/parse_options.sh"
    r = sh(f'set -- --stage 3 --stop-stage=5 --use-gpu true a b; stage=0; stop_stage=9; use_gpu=false; . {po}; '
           f'echo "$stage $stop_stage $use_gpu $*"', tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "3 5 true a b"
    r = sh(f"set -- --stgae 3; stage=0; . {po}", tmp_path)
    assert r.returncode == 1 and "invalid option --stgae" in r.stderr
    r = sh(f"set -- --use-gpu yes; use_gpu=false; . {po}", tmp_path)
    assert r.returncode == 1 and "takes true or false" in r.stderr
    r = sh(f'set -- --help; help_message="Usage: x --stage N"; stage=0; . {po}', tmp_path)
    assert r.returncode == 0 and "Usage: x --stage N" in r.stdout


def test_runner_jobs_logs_and_failure(tmp_path: Path):
    run = REPO / "utils/run.sh"
    r = sh(f"{run} JOB=1:3 log/j.JOB.log echo 'job JOB of 3'", tmp_path)
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        log = (tmp_path / f"log/j.{i}.log").read_text()
        assert f"job {i} of 3" in log and "# Ended (code 0)" in log and log.startswith("# echo")
    r = sh(f"{run} --max-jobs-run 1 JOB=1:4 log/f.JOB.log bash -c 'echo boom-JOB; exit $(( JOB % 2 ))'", tmp_path)
    assert r.returncode == 1
    assert "2 / 4 failed (jobs: 1 3)" in r.stderr and "boom-1" in r.stderr and "log/f.1.log" in r.stderr
    assert "# Ended (code 1)" in (tmp_path / "log/f.3.log").read_text()


def test_runner_requires_job_in_log_name(tmp_path: Path):
    r = sh(f"{REPO}/utils/run.sh JOB=1:2 log/x.log true", tmp_path)
    assert r.returncode == 1 and "must contain JOB" in r.stderr
