# shellcheck shell=bash
# The one home of the job runners' shared parts (Kaldi's run.pl/queue.pl/slurm.pl interface),
# sourced by utils/run.sh and utils/slurm.sh (utils/queue.sh runs slurm.sh):
#   job_range SELF ARGS...   the optional JOB=a:b (or JOB=a) and the log template in front of the
#                            command: sets jobvar first last logtmpl, and job_shift (how many of
#                            ARGS they took); on a usage error prints it and returns 1
#   job_log_of IDX           the log path of task IDX
#   job_run_task IDX         runs task IDX of argv: JOB replaced by IDX in the log path and in every
#                            argument; the log gets the command and start time, the output, then
#                            the accounting line and `# Ended (code N)`; returns the command's code
# job_run_task reads the globals jobvar, logtmpl, num_threads and the array argv; utils/slurm.sh
# copies it into each batch script (declare -f), so local and cluster logs cannot drift apart.

job_range() {  # job_range SELF ARGS...
  local self="$1"; shift
  jobvar=""; first=1; last=1; job_shift=1
  if [[ "${1:-}" =~ ^([A-Za-z]+)=([0-9]+):([0-9]+)$ ]]; then
    jobvar="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"; job_shift=2; shift
  elif [[ "${1:-}" =~ ^([A-Za-z]+)=([0-9]+)$ ]]; then
    jobvar="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="$first"; job_shift=2; shift
  elif [[ "${1:-}" =~ ^[A-Z]+= ]]; then  # JOB=1:abc, JOB=0x2: a broken range, not a log file name
    echo "ERROR: $self: bad job range '$1'; expected VAR=FIRST:LAST with integers (e.g. JOB=1:4)" >&2; return 1
  fi
  if [ $# -lt 2 ]; then
    echo "Usage: $self [options] [JOB=1:N] <log-file> <command> [args...]" >&2; return 1
  fi
  if [ -n "$jobvar" ] && [ "$first" -lt 1 ]; then
    echo "ERROR: $self: job range $jobvar=$first:$last starts below 1; jobs count from 1" >&2; return 1
  fi
  if [ "$first" -gt "$last" ]; then
    echo "$self: empty job range $jobvar=$first:$last" >&2; return 1
  fi
  logtmpl="$1"
  if [ "$last" -gt "$first" ] && [[ "$logtmpl" != *"$jobvar"* ]]; then
    echo "$self: log file $logtmpl must contain $jobvar when running jobs $first:$last" >&2; return 1
  fi
}

job_log_of() {  # job_log_of IDX
  if [ -n "$jobvar" ]; then echo "${logtmpl//$jobvar/$1}"; else echo "$logtmpl"; fi
}

job_run_task() {  # job_run_task IDX
  local idx="$1" log cmd a start rc
  log="$(job_log_of "$idx")"
  cmd=""
  for a in "${argv[@]}"; do
    [ -n "$jobvar" ] && a="${a//$jobvar/$idx}"
    cmd+="$(printf '%q' "$a") "
  done
  mkdir -p "$(dirname "$log")"
  start=$(date +%s)
  {
    echo "# $cmd"
    echo "# Started at $(date)"
    echo "#"
  } > "$log"
  ( [ -n "$num_threads" ] && export OMP_NUM_THREADS="$num_threads"; eval "$cmd" ) >> "$log" 2>&1
  rc=$?
  echo "# Accounting: time=$(( $(date +%s) - start )) threads=${num_threads:-1}" >> "$log"
  echo "# Ended (code $rc) at $(date), elapsed time $(( $(date +%s) - start )) seconds" >> "$log"
  return $rc
}
