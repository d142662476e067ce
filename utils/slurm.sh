#!/usr/bin/env bash
# Slurm job runner with Kaldi's calling convention (run.pl/queue.pl/slurm.pl); a drop-in for
# utils/run.sh in cmd.sh:
#
#   utils/slurm.sh [--gpu N] [--mem X] [--num-threads N] [--max-jobs-run N] [--config FILE]
#                  [--<name> V ...] [JOB=1:N] <log> <cmd> [args...]
# e.g.:
#   utils/slurm.sh --mem 4G JOB=1:8 exp/fb/log/fbank.JOB.log steps/compute_fbank.py --job JOB ...
#
# JOB=1:N submits ONE array job (`sbatch --wait --array=1-N%M`); a single job runs through `srun`.
# The string JOB in the log path and in every argument is replaced by the task index. Each task
# writes its own log with run.sh's header and footer (the command, start time, output, accounting,
# `# Ended (code N)`). The runner blocks in sbatch --wait / srun (no polling loop of its own), then
# reads every task's exit code from its log footer (a missing footer - task killed, time limit,
# node failure - counts as failed), and on failure prints run.sh's message: which jobs failed, the
# tail of the first failing log and its path, and exits 1. Ctrl-C / SIGTERM cancels the job.
#
# Options are mapped to scheduler options by a Kaldi-format conf file: --config FILE, else
# conf/slurm.conf in the current directory (a recipe's own), else utils/conf/slurm.conf (--mem X ->
# --mem=X, --gpu N -> --gres=gpu:N (+ a GPU partition if the conf says so), --num-threads N ->
# --cpus-per-task=N, --time, --partition). Any other --<name> needs an `option <name>=...` line.
# --max-jobs-run M throttles the array (%M); --num-threads also sets OMP_NUM_THREADS in the job.
#
# Jobs run in the current directory with the caller's environment (sbatch --export=ALL: PATH,
# VIRTUAL_ENV, ... from `. ./path.sh`). Per task the runner exports, for torchrun/DDP:
#   MASTER_PORT = 10000 + SLURM_JOB_ID % 20000  (differs between concurrent jobs, so DDP jobs that
#                 share a node do not clash; below Linux's ephemeral range 32768-60999)
#   MASTER_ADDR = the first host of the job's allocation
# The generated batch script is <logdir>/q/<name>.sh (its header records the submit command);
# Slurm's own output for task i (e.g. a time-limit message) is <logdir>/q/<name>.<i>.out.
# Called from inside a Slurm job, it submits new jobs (the caller's SLURM_* variables are dropped).
# Note: sbatch --wait checks the job every 2 s at first, then every 8 and 32 s when the cluster's
# MinJobAge is large (default 300 s), so a short array may finish up to that long before the
# runner returns. utils/queue.sh (Grid Engine) shares this implementation (--scheduler sge).
set -u
scheduler=slurm
if [ "${1:-}" = --scheduler ]; then scheduler="${2:-}"; shift 2 || shift; fi
case "$scheduler" in
  slurm) self=utils/slurm.sh; conf_name=slurm.conf ;;
  sge) self=utils/queue.sh; conf_name=queue.conf ;;
  *) echo "utils/slurm.sh: unknown --scheduler '$scheduler' (slurm or sge)" >&2; exit 1 ;;
esac
die() { echo "$self: $*" >&2; exit 1; }

# ---- command line ----
declare -A given=()
config=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) [ $# -ge 2 ] || die "--config needs a value"; config="$2"; shift 2 ;;
    --*=*) die "use '--name value', not $1" ;;
    --?*) [ $# -ge 2 ] || die "$1 needs a value"; n="${1#--}"; given[${n//-/_}]="$2"; shift 2 ;;
    *) break ;;
  esac
done
# shellcheck source=utils/lib/jobs.sh
. "$(dirname "$(readlink -f "$0")")/lib/jobs.sh"
job_range "$self" "$@" || exit 1
shift "$job_shift"
argv=("$@")

# ---- the conf file: command, option and default lines ----
if [ -z "$config" ]; then
  config="conf/$conf_name"
  [ -f "$config" ] || config="$(dirname "$(readlink -f "$0")")/conf/$conf_name"
fi
[ -f "$config" ] || die "config file $config not found"
submit=()
declare -A exact=() wild=() defaults=() known=()
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  line="${line%%#*}"
  read -r -a w <<<"$line"
  [ ${#w[@]} -eq 0 ] && continue
  case "${w[0]}" in
    command) submit=("${w[@]:1}") ;;
    option|default)
      [[ "${w[1]:-}" =~ ^([A-Za-z_]+)=(.+)$ ]] || die "$config:$lineno: expected '${w[0]} name=value', got: $line"
      n="${BASH_REMATCH[1]}"; v="${BASH_REMATCH[2]}"
      if [ "${w[0]}" = default ]; then defaults[$n]="$v"; continue; fi
      known[$n]=1
      if [ "$v" = "*" ]; then wild[$n]="${w[*]:2}"; else exact[$n=$v]="${w[*]:2}"; fi ;;
    *) die "$config:$lineno: unknown line type '${w[0]}' (command, option or default)" ;;
  esac
done < "$config"
[ ${#submit[@]} -gt 0 ] || die "$config has no 'command' line"

max_jobs_run="${given[max_jobs_run]:-${defaults[max_jobs_run]:-}}"
num_threads="${given[num_threads]:-${defaults[num_threads]:-}}"
unset 'given[max_jobs_run]' 'defaults[max_jobs_run]'
[ -z "$max_jobs_run" ] || [[ "$max_jobs_run" =~ ^[1-9][0-9]*$ ]] || die "--max-jobs-run takes a positive integer, got '$max_jobs_run'"
for n in "${!given[@]}"; do
  [ -n "${known[$n]:-}" ] || die "unknown option --${n//_/-} (no 'option ${n}=...' line in $config; valid: --config --max-jobs-run$(printf '%s\n' "${!known[@]}" | sort | sed 's/^/ --/' | tr -d '\n' | tr _ -))"
done
opts=()
for n in $(printf '%s\n' "${!known[@]}" | sort); do
  if [ -n "${given[$n]+x}" ]; then v="${given[$n]}"; elif [ -n "${defaults[$n]+x}" ]; then v="${defaults[$n]}"; else continue; fi
  if [ -n "${exact[$n=$v]+x}" ]; then o="${exact[$n=$v]}"
  elif [ -n "${wild[$n]+x}" ]; then o="${wild[$n]//\$0/$v}"
  else die "no mapping for --${n//_/-} $v in $config"; fi
  read -r -a ow <<<"$o"
  opts+=("${ow[@]}")
done

# ---- the batch script: one task = utils/lib/jobs.sh's job_run_task for index $idx ----
logdir="$(dirname "$logtmpl")"
base="$(basename "$logtmpl")"
[ -n "$jobvar" ] && { base="${base//.$jobvar/}"; base="${base//$jobvar/}"; }
base="${base%.log}"; [ -n "$base" ] || base=job
qdir="$logdir/q"
mkdir -p "$qdir" || die "cannot create $qdir"
script="$qdir/$base.sh"
stale=()   # earlier logs must not pass for this run's (a task that never starts writes none)
for ((i = first; i <= last; i++)); do stale+=("$(job_log_of $i)" "$qdir/$base.$i.out"); done
rm -f "${stale[@]}"

if [ "$scheduler" = slurm ]; then
  # Drop the caller's allocation (when run inside a Slurm job) so that new jobs are submitted.
  envclean=()
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    for v in $(compgen -e); do
      case "$v" in SLURM_CONF) ;; SLURM_*|SRUN_*|SALLOC_*) envclean+=(-u "$v") ;; esac
    done
  fi
  common=(--job-name="$base" --chdir="$PWD" "${opts[@]}")
  if [ "$first" -eq "$last" ]; then
    submit_cmd=(env "${envclean[@]}" srun "${submit[@]:1}" "${common[@]}" --quiet bash "$script")
    submit_out="$qdir/$base.$first.out"; client=srun
  else
    submit_cmd=(env "${envclean[@]}" "${submit[@]}" "${common[@]}" --wait "--array=$first-$last${max_jobs_run:+%$max_jobs_run}"
                "--output=$qdir/$base.%a.out" "$script")
    submit_out="$qdir/$base.submit.out"; client="${submit[0]}"
  fi
  task_id='${SLURM_ARRAY_TASK_ID:-'"$first"'}'
  job_id='${SLURM_JOB_ID:-$$}'
  master_addr='$(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null | head -n 1)'
  cancel="scancel"
else
  # Grid Engine: always an array (-t i-j, also for one job), so SGE_TASK_ID is always set.
  # (stdbuf: qsub's "Your job N" line reaches the file at once, for qdel on Ctrl-C)
  unbuf=(); command -v stdbuf >/dev/null && unbuf=(stdbuf -oL)
  submit_cmd=("${unbuf[@]}" "${submit[@]}" "${opts[@]}" -N "$base" -sync y -t "$first-$last" ${max_jobs_run:+-tc "$max_jobs_run"}
              -o "$qdir/$base."'$TASK_ID'".out" "$script")
  submit_out="$qdir/$base.submit.out"; client="${submit[0]}"
  task_id='${SGE_TASK_ID:-'"$first"'}'
  job_id='$(( ${JOB_ID:-$$} * 100 + ${SGE_TASK_ID:-0} ))'   # JOB_ID is shared by an array's tasks
  master_addr=''
  cancel="qdel"
fi

{
  echo "#!/usr/bin/env bash"
  echo "# Written by $self on $(date) for $(printf '%q' "$logtmpl"); submitted with:"
  echo "#   $(printf '%q ' "${submit_cmd[@]}")"
  echo "cd $(printf '%q' "$PWD") || exit 1"
  echo "jobvar=$(printf '%q' "$jobvar") logtmpl=$(printf '%q' "$logtmpl") num_threads=$(printf '%q' "$num_threads")"
  echo "argv=($(printf '%q ' "${argv[@]}"))"
  echo "idx=$task_id"
  echo "export MASTER_PORT=\$(( 10000 + $job_id % 20000 ))"
  echo "MASTER_ADDR=$master_addr; export MASTER_ADDR=\${MASTER_ADDR:-\$HOSTNAME}"
  declare -f job_log_of job_run_task   # utils/lib/jobs.sh: the task body utils/run.sh runs too
  echo 'job_run_task "$idx"'
  echo 'exit $?'
} > "$script" || die "cannot write $script"
chmod +x "$script"

# ---- submit and wait (the scheduler's client blocks; Ctrl-C cancels the job) ----
"${submit_cmd[@]}" </dev/null >"$submit_out" 2>&1 &
subpid=$!
submitted_id() { grep -m1 -oE '(Submitted batch job|Your job(-array)?) [0-9]+' "$submit_out" 2>/dev/null | grep -oE '[0-9]+$'; }
on_signal() {
  local id
  id=$(submitted_id)
  [ -n "$id" ] && $cancel "$id" >/dev/null 2>&1
  kill -TERM "$subpid" 2>/dev/null
  echo "$self: interrupted; cancelled ${id:+job $id }(logs: $(job_log_of $first) ...)" >&2
  exit 130
}
trap on_signal INT TERM
wait "$subpid"
subrc=$?
trap - INT TERM

# ---- exit codes from the task logs' footers ----
failed=(); nolog=0
for ((i = first; i <= last; i++)); do
  log="$(job_log_of $i)"
  [ -f "$log" ] || nolog=$((nolog + 1))
  code=$(grep -oE '^# Ended \(code [0-9]+\)' "$log" 2>/dev/null | tail -n 1 | grep -oE '[0-9]+')
  [ "${code:-x}" = 0 ] || failed+=("$i")
done
n=$((last - first + 1))
if [ "$nolog" -eq "$n" ] && [ "$subrc" -ne 0 ] && [ -z "$(submitted_id)" ]; then
  # Nothing ran: the submission itself failed (bad option, unknown partition, no scheduler...).
  echo "$self: $client failed (exit $subrc), no job ran; its output ($submit_out):" >&2
  tail -n 15 "$submit_out" | sed 's/^/    /' >&2
  echo "$self: submit command is in the header of $script" >&2
  exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
  firstlog="$(job_log_of "${failed[0]}")"
  echo "$self: ${#failed[@]} / $n failed (jobs: ${failed[*]}); tail of $firstlog:" >&2
  if [ -f "$firstlog" ]; then
    grep -q '^# Ended (code' "$firstlog" || echo "    ($self: no exit code in the log: the task was killed; scheduler output: $qdir/$base.${failed[0]}.out)" >&2
    tail -n 15 "$firstlog" | sed 's/^/    /' >&2
  else
    out="$qdir/$base.${failed[0]}.out"
    echo "    ($self: the task wrote no log; scheduler output follows)" >&2
    { tail -n 15 "$out"; [ "$out" = "$submit_out" ] || tail -n 15 "$submit_out"; } 2>/dev/null | sed 's/^/    /' >&2
  fi
  echo "$self: log is in $firstlog" >&2
  exit 1
fi
exit 0
