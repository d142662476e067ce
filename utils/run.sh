#!/usr/bin/env bash
# Local job runner with Kaldi's calling convention (the interface of run.pl/queue.pl/slurm.pl):
#
#   utils/run.sh [--gpu N] [--mem X] [--num-threads N] [--max-jobs-run N] [JOB=1:N] <log> <cmd> [args...]
#
# With JOB=1:N the command runs N times; the string JOB in the log path and in every argument
# is replaced by the job index. Jobs run in parallel (at most --max-jobs-run at once, default:
# the number of cores). Each log starts with the command and start time and ends with the exit
# code and wall time, as Kaldi's do. If any job fails, this prints which jobs failed, the tail of
# the first failing log and its path, and exits 1.
# --gpu/--mem/--num-threads are accepted for interface compatibility (a queue runner maps them
# to its scheduler); locally --num-threads sets OMP_NUM_THREADS for the job.
set -u
self=utils/run.sh
max_jobs_run=$(nproc 2>/dev/null || echo 1)
num_threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu|--mem|--config) shift 2 ;;
    --num-threads) num_threads="$2"; shift 2 ;;
    --max-jobs-run) max_jobs_run="$2"; shift 2 ;;
    --*) echo "$self: unknown option $1 (valid: --gpu --mem --num-threads --max-jobs-run)" >&2; exit 1 ;;
    *) break ;;
  esac
done
# shellcheck source=utils/lib/jobs.sh
. "$(dirname "$(readlink -f "$0")")/lib/jobs.sh"
job_range "$self" "$@" || exit 1
shift "$job_shift"

argv=("$@")
declare -A pid2job
failed=()
running=0
for ((i = first; i <= last; i++)); do
  job_run_task "$i" &
  pid2job[$!]=$i
  running=$((running + 1))
  if [ "$running" -ge "$max_jobs_run" ]; then
    wait -n; running=$((running - 1))
  fi
done
# Collect exit codes of every job (wait on each pid, including those already reaped by wait -n,
# whose status bash remembers).
for pid in "${!pid2job[@]}"; do
  if ! wait "$pid"; then failed+=("${pid2job[$pid]}"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
  IFS=$'\n' failed=($(sort -n <<<"${failed[*]}")); unset IFS
  firstlog="$(job_log_of "${failed[0]}")"
  n=$((last - first + 1))
  echo "$self: ${#failed[@]} / $n failed (jobs: ${failed[*]}); tail of $firstlog:" >&2
  tail -n 15 "$firstlog" | sed 's/^/    /' >&2
  echo "$self: log is in $firstlog" >&2
  exit 1
fi
exit 0
