#!/usr/bin/env bash
# Grid Engine (SGE/OGE/UGE, `qsub`) job runner with Kaldi's calling convention (queue.pl); a
# drop-in for utils/run.sh in cmd.sh:
#
#   utils/queue.sh [--gpu N] [--mem X] [--num-threads N] [--max-jobs-run N] [--config FILE]
#                  [--<name> V ...] [JOB=1:N] <log> <cmd> [args...]
# e.g.:
#   utils/queue.sh --mem 4G JOB=1:8 exp/fb/log/fbank.JOB.log steps/compute_fbank.py --job JOB ...
#
# Submits ONE array job, `qsub -sync y -t 1:N [-tc M]` (also for a single job: -t i-i), and waits
# for it; options are mapped by a Kaldi-format conf file (--config FILE, else conf/queue.conf in
# the current directory, else utils/conf/queue.conf: --mem -> -l mem_free, --gpu ->
# -q g.q -l gpu, --num-threads -> -pe smp). Logs, exit codes (from each task log's footer) and the
# failure message are exactly utils/run.sh's and utils/slurm.sh's: the implementation is shared
# with utils/slurm.sh (--scheduler sge), which documents the details. Per task the runner exports
# MASTER_PORT = 10000 + (JOB_ID*100 + SGE_TASK_ID) % 20000 and MASTER_ADDR = the task's host.
#
# Tested by hand, not in CI: against Debian's gridengine 8.1.9 (single node, as root) - arrays,
# failing tasks (message and exit 1), --max-jobs-run (-tc), a single job, qdel on SIGTERM, a
# rejected submission. CI has no Grid Engine (it needs a system-wide install), so
# tests/test_cluster.py checks this runner only where `qstat` answers. The Slurm path of the same
# implementation is tested against a real local Slurm.
exec "$(dirname "$(readlink -f "$0")")/slurm.sh" --scheduler sge "$@"
