# Which job runner each kind of work goes through. Every runner takes Kaldi's interface:
#   $cmd [--gpu N] [--mem X] [--num-threads N] [--max-jobs-run M] JOB=1:N <log> <command> [args...]
# Local machine (default):
export train_cmd="utils/run.sh"
export decode_cmd="utils/run.sh"
export cuda_cmd="utils/run.sh --gpu 1"
# Slurm (one array job per stage; options mapped by conf/slurm.conf if present, else
# utils/conf/slurm.conf):
#   export train_cmd="utils/slurm.sh --mem 4G"
#   export decode_cmd="utils/slurm.sh --mem 8G"
#   export cuda_cmd="utils/slurm.sh --gpu 1 --mem 32G"
# Grid Engine (qsub -sync y -t 1:N; conf/queue.conf or utils/conf/queue.conf):
#   export train_cmd="utils/queue.sh --mem 4G"
#   export cuda_cmd="utils/queue.sh --gpu 1 --mem 32G"
