#!/usr/bin/env bash
# Cross-check of the k2 decoder by Kaldi's FasterDecoder: one neural AM's log-likelihoods of one
# part (steps/compute_loglikes.py), decoded by both over the same graph at the AM's dev-best
# scale (<am-dir>/decode_<part>/best_scale, from steps/decode_am.sh) and compared
# (steps/compare_decoders.py): <out-dir>/compare_decoders.md and .json. The log-likelihoods are
# removed afterwards; a done marker (model, best scale, references, graph, decode config) makes a
# rerun skip it.
#
#   steps/compare_decoders.sh [options] <graph-dir> <data-dir> <am-dir> <out-dir>
# e.g.:
#   steps/compare_decoders.sh --config conf/tiny.yaml --part dev-synth \
#     --train-cuts data/targets/cuts_train-synth.jsonl.gz data/lang/graph data/fbank exp/am_ce/seed1 \
#     exp/compare_decoders_dev-synth
set -euo pipefail
echo "$0 $*" >&2

cmd=utils/run.sh    # job runner ($decode_cmd in cmd.sh)
config=""           # recipe config (section decode)
device=cpu
part=""             # the part (its decode_<part>/best_scale gives the scale)
train_cuts=""       # training cuts with frame targets: the AM's senone priors
title=""            # heading of the report (default: <am-dir>, <part>)

help_message="Usage: $0 [options] <graph-dir> <data-dir> <am-dir> <out-dir>
e.g.: $0 --config conf/tiny.yaml --part dev-synth --train-cuts data/targets/cuts_train-synth.jsonl.gz \\
        data/lang/graph data/fbank exp/am_ce/seed1 exp/compare_decoders_dev-synth
Options:
  --cmd CMD          job runner ($cmd)
  --config FILE      recipe config ($config)
  --device DEV       cpu or cuda[:n] for the log-likelihoods ($device)
  --part NAME        part to decode, already decoded by steps/decode_am.sh (required)
  --train-cuts FILE  training cuts with targets, for the senone priors (required)
  --title TEXT       heading of the report (default: <am-dir>, <part>)"

[ -f ./path.sh ] && . ./path.sh
. utils/lib/log.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
graph=${1%/}; data=${2%/}; dir=${3%/}; out=${4%/}
[ -n "$part" ] || { echo "$0: --part is required" >&2; exit 1; }
[ -n "$title" ] || title="$dir, $part"
best=$dir/decode_$part/best_scale
for f in $dir/final.pt $best $graph/HCLG.pt $data/cuts_$part.jsonl.gz $data/global_cmvn.ark "$train_cuts"; do
  [ -f "$f" ] || { echo "$0: expected file ${f:-given by --train-cuts} to exist" >&2; exit 1; }
done

fp=$(steps/fingerprint.py --config "$config" --section decode $dir/final.pt $best \
  $data/cuts_$part.jsonl.gz $graph/HCLG.pt)
if [ -f $out/.done ] && [ "$(cat $out/.done)" = "$fp" ]; then
  log "$out is up to date, skipping"; exit 0
fi
$cmd $out/log/loglikes.log \
  steps/compute_loglikes.py --device $device --cmvn $data/global_cmvn.ark --train-cuts $train_cuts \
    $dir/final.pt $data/cuts_$part.jsonl.gz $out/loglikes.scp
sf=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["subsampling_factor"])' $out/loglikes.json)
$cmd $out/log/compare.log \
  steps/compare_decoders.py --config "$config" --graph $graph --subsampling-factor $sf \
    --acoustic-scale "$(cat $best)" --ref $data/cuts_$part.jsonl.gz --title "$title" $out/loglikes.scp $out
rm -f $out/loglikes.ark $out/loglikes.scp $out/.loglikes.done
echo "$fp" > $out/.done
