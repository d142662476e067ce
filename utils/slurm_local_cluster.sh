#!/usr/bin/env bash
# A single-node, loopback-only Slurm (slurmctld + slurmd + munged) for tests and demos:
# no systemd, every file (config, munge key and socket, state, spool,
# logs, pid files) under one state directory, free TCP ports picked at start, the node's CPUs and
# memory taken from `slurmd -C`. Nothing outside the state directory is touched, so it can run next
# to a system Slurm/munge (clients find it through SLURM_CONF).
#
#   utils/slurm_local_cluster.sh start  [<state-dir>]   # prints "export SLURM_CONF=..." on stdout
#   utils/slurm_local_cluster.sh stop   [<state-dir>]   # cancels its jobs, stops the daemons
#   utils/slurm_local_cluster.sh status [<state-dir>]   # exit 0 when up and the node is usable
# e.g.:
#   eval "$(utils/slurm_local_cluster.sh start /tmp/myslurm)" && utils/slurm.sh JOB=1:3 log/x.JOB.log echo JOB
#   utils/slurm_local_cluster.sh stop /tmp/myslurm
#
# <state-dir> defaults to $LM2AM_SLURM_DIR or ${TMPDIR:-/tmp}/lm2am-slurm. `start` is idempotent:
# a cluster already up in that directory is reused; a half-dead one is stopped and restarted.
# Exit codes: 0 ok; 1 usage error; 2 this machine cannot run it (not root, slurm-wlm/munge not
# installed, a daemon refused to start), with the reason on stderr.
set -u
self=utils/slurm_local_cluster.sh
action="${1:-}"
dir="${2:-${LM2AM_SLURM_DIR:-${TMPDIR:-/tmp}/lm2am-slurm}}"
case "$action" in
  start|stop|status) ;;
  *) echo "Usage: $self start|stop|status [<state-dir>]" >&2; exit 1 ;;
esac
cannot() { echo "$self: cannot run a local Slurm: $*" >&2; exit 2; }
if [ "$action" = start ]; then
  [ "$(id -u)" = 0 ] || cannot "needs root (slurmd starts jobs as their user; run as root or use utils/run.sh)"
  for b in munged mungekey slurmctld slurmd sbatch srun sinfo scontrol scancel; do
    command -v $b >/dev/null || cannot "$b not found; install the Debian packages: apt-get install slurm-wlm munge (utils/setup_env.sh does, as root)"
  done
  mkdir -p "$dir" || cannot "cannot create $dir"
elif [ ! -d "$dir" ]; then
  echo "$self: not running in $dir (no such directory)" >&2
  [ "$action" = stop ]; exit   # stop: nothing to do (0); status: 1
fi
dir="$(cd "$dir" && pwd)"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"
daemons="slurmd slurmctld munged"

pid_of() {  # $1 = daemon; prints the pid if its pid file names a live process
  local p
  p=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
  [[ "$p" =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null && echo "$p"
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n 1; }

is_up() {
  local d
  for d in munged slurmctld slurmd; do pid_of $d >/dev/null || return 1; done
  [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]
}

stop_all() {
  local d p i
  if pid_of slurmctld >/dev/null && [ -f "$conf" ]; then
    scancel --quiet --user="$(id -un)" 2>/dev/null   # this cluster's jobs only (SLURM_CONF)
  fi
  local pids=()
  for d in $daemons; do   # all at once: each takes 1-2 s to shut down
    p=$(pid_of $d) && { kill -TERM "$p" 2>/dev/null; pids+=("$p"); }
  done
  for p in "${pids[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  for d in $daemons; do rm -f "$dir/$d.pid"; done
  return 0
}

if [ "$action" = stop ]; then stop_all; echo "$self: stopped the Slurm in $dir" >&2; exit 0; fi
if [ "$action" = status ]; then
  if is_up; then echo "$self: up in $dir (node $(node_state))" >&2; exit 0; fi
  echo "$self: not running in $dir" >&2; exit 1
fi

# ---- start ----
if is_up; then
  echo "$self: already up in $dir" >&2
  echo "export SLURM_CONF=$conf"
  exit 0
fi
stop_all   # whatever is left of an earlier start

sock="$dir/munge/munge.socket"
[ ${#sock} -lt 100 ] || cannot "state dir path too long for a unix socket: $dir"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" || cannot "cannot write to $dir"
chmod 700 "$dir/munge"

free_port() {  # a TCP port nothing listens on (an empty connect fails), from a pseudo-random start
  local p=$(( 20000 + (RANDOM * 7 + $$) % 20000 )) i
  for ((i = 0; i < 200; i++, p++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo $p; return 0; }
  done
  return 1
}
ctld_port=$(free_port) || cannot "no free TCP port"
slurmd_port=$((ctld_port + 1))
(exec 3<>"/dev/tcp/127.0.0.1/$slurmd_port") 2>/dev/null && { slurmd_port=$(free_port) || cannot "no free TCP port"; }

host=$(hostname -s 2>/dev/null) || host="${HOSTNAME%%.*}"
nodeline=$(slurmd -C 2>/dev/null | head -n 1)
[[ "$nodeline" == NodeName=* ]] || cannot "slurmd -C did not describe this node"
nodeline="NodeName=$host NodeAddr=127.0.0.1 ${nodeline#NodeName=* }"

# Munge: a fresh key and a private socket, so a system munged (if any) is left alone.
[ -s "$dir/munge/munge.key" ] || mungekey -c -k "$dir/munge/munge.key" 2>"$dir/log/mungekey.log" \
  || cannot "mungekey failed: $(tail -n 3 "$dir/log/mungekey.log")"
chmod 600 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$sock" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" 2>>"$dir/log/munged.log" \
  || cannot "munged did not start: $(tail -n 3 "$dir/log/munged.log")"

cat > "$conf" <<EOF
# Written by $self on $(date); loopback-only single-node cluster.
ClusterName=lm2am-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# Without a default memory per CPU every job claims the whole node and array tasks run serially.
DefMemPerCPU=256
# sbatch --wait polls after 2 s, then 4x longer while the interval is below MinJobAge/2: keep 2 s.
MinJobAge=4
SchedulerParameters=batch_sched_delay=0
SlurmdTimeout=30
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
$nodeline State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -c >>"$dir/log/slurmctld.start.log" 2>&1 \
  || { stop_all; cannot "slurmctld did not start: $(tail -n 3 "$dir/log/slurmctld.log" "$dir/log/slurmctld.start.log" 2>/dev/null)"; }
slurmd >>"$dir/log/slurmd.start.log" 2>&1 \
  || { stop_all; cannot "slurmd did not start: $(tail -n 3 "$dir/log/slurmd.log" "$dir/log/slurmd.start.log" 2>/dev/null)"; }
# Wait (at most 30 s) for the node to register and become usable.
for ((i = 0; i < 150; i++)); do
  is_up && break
  sleep 0.2
done
if ! is_up; then
  why="node state '$(node_state)'; slurmctld.log: $(tail -n 2 "$dir/log/slurmctld.log" 2>/dev/null); slurmd.log: $(tail -n 2 "$dir/log/slurmd.log" 2>/dev/null)"
  stop_all
  cannot "daemons did not come up: $why"
fi
# A first job proves that jobs really launch (and makes the next ones start faster).
if ! out=$(cd "$dir" && timeout 30 srun --quiet --chdir="$dir" true 2>&1); then
  why="a test job (srun true) failed: $out; slurmd.log: $(tail -n 2 "$dir/log/slurmd.log" 2>/dev/null)"
  stop_all
  cannot "$why"
fi
echo "$self: up in $dir (node $host, ports $ctld_port/$slurmd_port)" >&2
echo "export SLURM_CONF=$conf"
