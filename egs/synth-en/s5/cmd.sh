# Which job runner each kind of work goes through. Every runner takes Kaldi's interface:
#   $cmd [--gpu N] [--mem X] [--num-threads N] JOB=1:N <log> <command> [args...]
# Local machine (default):
export train_cmd="utils/run.sh"
export decode_cmd="utils/run.sh"
export cuda_cmd="utils/run.sh --gpu 1"
# On a cluster, point these at a queue runner instead (e.g. utils/slurm.sh, utils/queue.sh),
# keeping the same interface.
