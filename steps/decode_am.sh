#!/usr/bin/env bash
# Decode and score the dev part with one acoustic model, sweeping the acoustic scale, then every
# test part at the dev-best scale (<am-dir>/decode_<dev>/best_scale). The model is either
#   a neural AM (<am-dir>/final.pt): log-likelihoods (steps/compute_loglikes.py: AM output minus
#     log priors), then k2 decoding over <graph-dir>/HCLG.pt and scoring (steps/decode.py); dev
#     is decoded once and rescored at every scale of --scales; or
#   the Kaldi GMM-HMM system (<am-dir>/final.mdl; its final.pt is the aligner's descriptor):
#     steps/decode_gmm.py over <graph-dir>/HCLG.fst, dev swept over the config's gmm.decode_scales.
# With --nj N the k2 decoding of a part runs in N jobs of the job runner (each its slice of the
# utterances), then one merge scores the part: the same files as one job.
# Writes <am-dir>/decode_<part>/ (wer-<part>, errs-<part>.txt, decode_info.json, ...). A done
# marker per part (fingerprint of the model, references, graph, config section and scale) makes a
# rerun skip the parts that are up to date.
#
#   steps/decode_am.sh [options] <graph-dir> <data-dir> <am-dir>
# e.g.:
#   steps/decode_am.sh --config conf/tiny.yaml --dev-part dev-synth --test-parts test-synth \
#     --train-cuts data/targets/cuts_train-synth.jsonl.gz data/lang/graph data/fbank exp/am_ce/seed1
#   steps/decode_am.sh --config conf/tiny.yaml --dev-part dev-synth --test-parts test-synth \
#     exp/mono_gmm/graph data/fbank exp/mono_gmm
set -euo pipefail
echo "$0 $*" >&2

cmd=utils/run.sh    # job runner ($decode_cmd in cmd.sh)
config=""           # recipe config (sections decode, gmm)
device=cpu
nj=1                # decoding jobs per part (neural AM: k2 decoding; log-likelihoods stay one job)
dev_part=""         # decoded at every scale of --scales; its best scale decodes the test parts
test_parts=""
scales="0.05 0.07 0.1 0.14 0.2 0.3 0.5"   # neural AM only (the GMM system sweeps gmm.decode_scales)
train_cuts=""       # training cuts with frame targets: the AM's senone priors (neural AM only)
keep_loglikes=false # keep decode_<part>/loglikes.ark after decoding (neural AM only)
name=""             # the model's name in the progress lines (default: <am-dir>)

help_message="Usage: $0 [options] <graph-dir> <data-dir> <am-dir>
e.g.: $0 --config conf/tiny.yaml --dev-part dev-synth --test-parts test-synth \\
        --train-cuts data/targets/cuts_train-synth.jsonl.gz data/lang/graph data/fbank exp/am_ce/seed1
<data-dir> holds cuts_<part>.jsonl.gz and global_cmvn.ark (steps/compute_fbank.py, compute_cmvn.py).
Options:
  --cmd CMD             job runner ($cmd)
  --config FILE         recipe config ($config)
  --device DEV          cpu or cuda[:n] ($device)
  --nj N                decoding jobs per part, neural AM ($nj)
  --dev-part NAME       part swept over the scales (required)
  --test-parts LIST     parts decoded at the dev-best scale (\"$test_parts\")
  --scales LIST         acoustic scales swept on dev, neural AM (\"$scales\")
  --train-cuts FILE     training cuts with targets, for the senone priors (neural AM; required there)
  --keep-loglikes BOOL  keep the log-likelihood arks ($keep_loglikes)
  --name NAME           name in the progress lines (default: <am-dir>)"

[ -f ./path.sh ] && . ./path.sh
. utils/lib/log.sh
. utils/parse_options.sh

if [ $# -ne 3 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
graph=${1%/}; data=${2%/}; dir=${3%/}
[ -n "$dev_part" ] || { echo "$0: --dev-part is required" >&2; exit 1; }
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --nj $nj: expected a positive integer" >&2; exit 1; }
[ -n "$name" ] || name=$dir
if [ -f $dir/final.mdl ]; then kind=gmm; model=$dir/final.mdl; hclg=$graph/HCLG.fst; section=gmm
elif [ -f $dir/final.pt ]; then kind=am; model=$dir/final.pt; hclg=$graph/HCLG.pt; section=decode
else echo "ERROR: $dir/final.pt is missing; run stage 14 for $name" >&2; exit 1
fi
for f in $hclg $data/cuts_$dev_part.jsonl.gz; do
  [ -f $f ] || { echo "$0: expected file $f to exist" >&2; exit 1; }
done
if [ $kind = am ]; then
  for f in "$train_cuts" $data/global_cmvn.ark; do
    [ -f "$f" ] || { echo "$0: expected file ${f:-given by --train-cuts} to exist" >&2; exit 1; }
  done
fi

# scale_opts PART: the scale options of PART's decode: the sweep on dev, the dev-best scale after.
scale_opts() {
  if [ $1 = $dev_part ]; then
    if [ $kind = am ]; then echo "--scales $(echo $scales | tr ' ' ',')"; else echo "--sweep"; fi
  else
    [ -f $dir/decode_$dev_part/best_scale ] || \
      { echo "ERROR: $dir/decode_$dev_part/best_scale is missing; decode $dev_part first (stage 16)" >&2; return 1; }
    echo "--acoustic-scale $(cat $dir/decode_$dev_part/best_scale)"
  fi
}

decode_nnet() {  # decode_nnet PART OUT OPTS: log-likelihoods, then k2 decoding and scoring
  local part=$1 out=$2 opts=$3 sf b dec
  $cmd $dir/log/loglikes_$part.log \
    steps/compute_loglikes.py --device $device --cmvn $data/global_cmvn.ark --train-cuts $train_cuts \
      $model $data/cuts_$part.jsonl.gz $out/loglikes.scp
  sf=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["subsampling_factor"])' $out/loglikes.json)
  dec=(steps/decode.py --config "$config" --graph $graph --device $device
       --subsampling-factor $sf $opts --ref $data/cuts_$part.jsonl.gz --set-name $part)
  if [ $nj -gt 1 ]; then  # jobs decode their slices; the merge scores the part as one job would
    $cmd JOB=1:$nj $dir/log/decode_$part.JOB.log "${dec[@]}" --job JOB --num-jobs $nj $out/loglikes.scp $out
    $cmd $dir/log/decode_$part.log "${dec[@]}" --merge --num-jobs $nj $out/loglikes.scp $out
  else
    $cmd $dir/log/decode_$part.log "${dec[@]}" $out/loglikes.scp $out
  fi
  if [ $part = $dev_part ]; then
    b=$(cat $out/best_scale)
    echo "  $name $part: best acoustic scale $b: $(grep "^$b " $out/scales.txt | cut -d' ' -f2-)"
  else
    echo "  $name $part: $(head -n 1 $out/wer-$part)"
  fi
  $keep_loglikes || rm -f $out/loglikes.ark $out/loglikes.scp $out/.loglikes.done
}

decode_gmm() {  # decode_gmm PART OUT OPTS: Kaldi's FasterDecoder on the GMM system, and scoring
  local part=$1 out=$2 opts=$3
  $cmd $dir/log/decode_$part.log \
    steps/decode_gmm.py --config "$config" --graph $graph $opts $data/cuts_$part.jsonl.gz $dir $out
  echo "  $name $part: $(head -n 1 $out/wer-$part)"
}

for part in $dev_part $test_parts; do
  out=$dir/decode_$part
  opts=$(scale_opts $part)   # (--param=: a value such as --sweep must not read as an option)
  fp=$(steps/fingerprint.py --config "$config" --section $section --param="$opts" \
    $model $data/cuts_$part.jsonl.gz $hclg)
  if [ -f $out/.done ] && [ "$(cat $out/.done)" = "$fp" ]; then
    log "$out is up to date, skipping"; continue
  fi
  log "decode $part with $name ($opts) in $out"
  if [ $kind = am ]; then decode_nnet $part $out "$opts"; else decode_gmm $part $out "$opts"; fi
  echo "$fp" > $out/.done
done
