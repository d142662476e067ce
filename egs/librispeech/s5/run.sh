#!/usr/bin/env bash
# lm2am recipe on LibriSpeech (or mini_librispeech) read from a copy already on disk: nothing is
# downloaded. Get the parts from openslr.org/12 (LibriSpeech) or /31 (mini_librispeech) and,
# for a real LM text, librispeech-lm-norm.txt.gz from openslr.org/11.
#
#   ./run.sh --librispeech-dir /data/LibriSpeech [--config conf/librispeech.yaml] [--stage N] [--stop-stage M]
#   mini_librispeech: ./run.sh --librispeech-dir /data/LibriSpeech --parts "train-clean-5 dev-clean-2" \
#                       --train-part train-clean-5 --dev-part dev-clean-2
#
# data/ and exp/ are outputs: delete any of them and rerun to rebuild. Every stage skips work
# that is already done (done markers hash the config section and inputs).
set -euo pipefail

stage=0
stop_stage=100
config=conf/librispeech.yaml   # conf/fake.yaml: the tiny fake corpus of tests/test_librispeech.py
nj=4                           # parallel jobs
librispeech_dir=/data/LibriSpeech   # holds train-clean-100/, dev-clean/, ... (openslr.org/12 layout)
parts="train-clean-100 dev-clean test-clean"
train_part=train-clean-100
dev_part=dev-clean
lm_norm=""                     # librispeech-lm-norm.txt[.gz]; "" = <librispeech-dir>/../librispeech-lm-norm.txt
lm_max_sentences=500000        # LM sentences sampled from it ("" = all 40M: slow lexicon/g2p and graph)
device=cpu                     # cpu | cuda
am_systems="ce aux_senone hier"   # names of conf/systems/*.yaml
seeds="1"

help_message="Usage: $0 [options]
  --config FILE            recipe config ($config)
  --stage N                first stage to run ($stage)
  --stop-stage N           last stage to run ($stop_stage)
  --nj N                   parallel jobs ($nj)
  --librispeech-dir DIR    on-disk LibriSpeech copy with the part directories ($librispeech_dir)
  --parts LIST             parts to prepare (\"$parts\")
  --train-part NAME        the training part ($train_part)
  --dev-part NAME          the dev part ($dev_part)
  --lm-norm FILE           librispeech-lm-norm.txt[.gz] (default: next to --librispeech-dir)
  --lm-max-sentences N     LM sentences sampled from it, \"\" = all ($lm_max_sentences)
  --device DEV             cpu or cuda for the neural stages ($device)
  --am-systems LIST        systems to train (\"$am_systems\")
  --seeds LIST             seeds per system (\"$seeds\")
Stages:
  0  check environment, config and the LibriSpeech copy
  1  lhotse manifests of each part, streamed chapter by chapter (steps/make_manifests.py --lazy)
  2  LM text: librispeech-lm-norm.txt if present, else the training transcripts
  3  lang: lexicon, phones, words, BPE (steps/prepare_lang.py)
  4  fbank features, streamed (steps/compute_fbank.py --lazy) + global CMVN
  5  data summary
  6  flat-start k2 aligner (steps/train_aligner.py)
  7  forced alignment of every part
  8  senone decision tree (steps/build_tree.py)
  9  frame targets: senone, monophone, subword (steps/make_targets.py)
  10 decoding graph HCLG (steps/make_graph.py)
  11 teacher LMs for senones, monophones, subwords (steps/train_lm.py)
  12 teacher posteriors of the train and dev parts
  13 train every AM system in --am-systems for every seed (steps/train_am.py)
  14 dev frame accuracy of every system (steps/eval_am.py)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

[ -n "$lm_norm" ] || lm_norm="$(dirname "$librispeech_dir")/librispeech-lm-norm.txt"
for p in $train_part $dev_part; do
  case " $parts " in *" $p "*) ;; *) echo "$0: --train-part/--dev-part $p is not in --parts \"$parts\"; add it" >&2; exit 1 ;; esac
done
parts_csv=$(echo $parts | tr ' ' ',')
lm_text=data/local/lm/lm_text.txt
mkdir -p exp/log
echo "$0 $*  # $(date)" >> exp/log/run.sh.commands

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: check environment, config $config and $librispeech_dir"
  for p in $parts; do
    [ -d "$librispeech_dir/$p" ] || { echo "$0: $librispeech_dir/$p not found; unpack the part there (openslr.org/12 or /31) or fix --librispeech-dir/--parts" >&2; exit 1; }
  done
  steps/check_config.py "$config"
  python -m lm2am.doctor
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: lhotse manifests for $parts from $librispeech_dir (streamed)"
  steps/make_manifests.py --lazy --config "$config" --nj $nj --parts "$parts_csv" "$librispeech_dir" data/manifests
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: LM text in $lm_text"
  local/librispeech/prepare_lm_text.py --lm-norm "$lm_norm" ${lm_max_sentences:+--max-sentences $lm_max_sentences} \
    --manifests data/manifests --train-part $train_part $lm_text 2>&1 | tee exp/log/prepare_lm_text.log
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: lang (lexicon, phones, words, BPE) in data/lang"
  steps/prepare_lang.py --config "$config" --manifests data/manifests --parts "$parts_csv" \
    --lm-text $lm_text data/lang 2>&1 | tee exp/log/prepare_lang.log
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: fbank features (streamed) and global CMVN in data/fbank"
  n=$(echo $parts | wc -w); [ $n -gt $nj ] && n=$nj
  $train_cmd JOB=1:$n data/fbank/log/fbank.JOB.log \
    steps/compute_fbank.py --lazy --config "$config" --lang data/lang --parts "$parts_csv" \
      --job JOB --num-jobs $n data/manifests data/fbank
  steps/compute_cmvn.py data/fbank/cuts_$train_part.jsonl.gz data/fbank/global_cmvn.ark
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: data summary"
  steps/data_summary.py --parts "$parts_csv" --lang data/lang data/fbank
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: flat-start aligner in exp/ali_mono"
  $cuda_cmd exp/ali_mono/log/train.log \
    steps/train_aligner.py --config "$config" --device $device \
      data/fbank/cuts_$train_part.jsonl.gz data/lang exp/ali_mono
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  for part in $parts; do
    log "Stage 7: align $part ($nj jobs)"
    $train_cmd JOB=1:$nj exp/ali_mono/log/align_$part.JOB.log \
      steps/align.py --job JOB --num-jobs $nj --device $device \
        data/fbank/cuts_$part.jsonl.gz data/lang exp/ali_mono
  done
  # No reference phone timings in LibriSpeech: nothing to score (synth-en's stage 8 scores them).
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: senone tree in exp/tree"
  steps/build_tree.py --config "$config" data/fbank/cuts_$train_part.jsonl.gz data/lang exp/ali_mono exp/tree
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  for part in $parts; do
    log "Stage 9: frame targets for $part in data/targets"
    steps/make_targets.py --plot $([ $part = $train_part ] && echo 2 || echo 0) \
      data/fbank/cuts_$part.jsonl.gz data/lang exp/ali_mono exp/tree data/targets
  done
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: decoding graph in data/lang/graph"
  steps/make_graph.py --config "$config" --lm-text $lm_text data/lang exp/tree/tree.json data/lang/graph
fi

teacher_units="monophone senone subword"   # exp/lm_<unit>; the LM code calls monophones "phone"

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  for unit in $teacher_units; do
    log "Stage 11: teacher LM for $unit in exp/lm_$unit"
    $cuda_cmd exp/lm_$unit/log/run.log \
      steps/train_lm.py --config "$config" --unit $([ $unit = monophone ] && echo phone || echo $unit) \
        --tree-dir exp/tree --lm-text $lm_text --targets-dir data/targets \
        --train-part $train_part --dev-cuts data/fbank/cuts_$dev_part.jsonl.gz --device $device \
        data/lang exp/lm_$unit
  done
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  for unit in $teacher_units; do
    for part in $train_part $dev_part; do
      log "Stage 12: $unit teacher posteriors for $part ($nj jobs)"
      $train_cmd JOB=1:$nj exp/lm_$unit/log/post_$part.JOB.log \
        steps/compute_posteriors.py --config "$config" --job JOB --num-jobs $nj --device $device \
          --lang-dir data/lang --tree-dir exp/tree exp/lm_$unit data/targets $part exp/lm_$unit/post_$part
      steps/compute_posteriors.py --config "$config" --merge --num-jobs $nj --lang-dir data/lang \
        --tree-dir exp/tree exp/lm_$unit data/targets $part exp/lm_$unit/post_$part
    done
  done
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  for sys in $am_systems; do
    for seed in $seeds; do
      log "Stage 13: train AM system $sys, seed $seed in exp/am_$sys/seed$seed"
      $cuda_cmd exp/am_$sys/seed$seed/log/run.log \
        steps/train_am.py --config "$config" --system conf/systems/$sys.yaml \
          --exp-dir exp/am_$sys/seed$seed --seed $seed --train-part $train_part \
          --dev-part $dev_part --device $device
    done
  done
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  log "Stage 14: dev frame accuracy of every system"
  for sys in $am_systems; do
    for seed in $seeds; do
      steps/eval_am.py --exp-dir exp/am_$sys/seed$seed --part $dev_part --device $device \
        --out exp/am_$sys/seed$seed/eval_$dev_part.json
    done
  done
  steps/frame_accuracy_report.py exp $dev_part
fi

log "Done (stages $stage..$stop_stage)."
