#!/usr/bin/env bash
# lm2am recipe on the embedded synthetic corpus "synth-en" (flite/festival/espeak-ng speech,
# WordNet transcripts, an LM-only text pool) plus the real-speech Asterisk check set.
#
#   ./run.sh [--config conf/demo.yaml] [--stage N] [--stop-stage M] [--nj 2]
#
# corpus/, data/ and exp/ are outputs: delete any of them and rerun to rebuild. Every stage
# skips work that is already done (done markers hash the config section and inputs, so an
# edited config or input re-runs the stage).
set -euo pipefail

stage=0
stop_stage=100
config=conf/demo.yaml   # corpus size: conf/tiny.yaml (CI), conf/demo.yaml, conf/large.yaml (GPU)
nj=2                    # parallel jobs
corpus=corpus           # where the corpus is generated (LibriSpeech layout)
train_part=train-synth
eval_parts="dev-synth test-synth"
real_parts="test-asterisk"   # real, out-of-domain speech; set to "" to skip it
device=cpu              # cpu | cuda
# The comparison: one AM per system (conf/systems/<name>.yaml) and seed. Edit freely.
am_systems="ce interp_0.1 interp_0.3 aux_monophone aux_senone aux_subword hier hier_no_senone hier_no_monophone hier_no_subword"
ali_source=k2           # alignments behind the senone tree and the targets: k2 (lm2am's aligner,
                        # exp/ali_mono) | gmm (Kaldi's GMM-HMM monophone system, exp/mono_gmm)
gmm_baseline=true       # also train Kaldi's GMM-HMM mono system: aligner comparison, GMM row in RESULTS.md
am_jobs=2               # AMs trained / decoded side by side (each with train.num_threads threads)
seeds="1"               # seeds of every system
extra_seeds="2 3"       # more seeds for $extra_seed_systems (RESULTS.md: mean ± std over seeds)
extra_seed_systems="ce hier"
decode_scales="0.05 0.07 0.1 0.14 0.2 0.3 0.5"   # acoustic scales swept on dev; the best one decodes test
keep_loglikes=false     # keep exp/am_*/seed*/decode_*/loglikes.ark (float32 [frames, senones]) after decoding
extra_result_rows=""    # more RESULTS.md rows, "NAME=DIR ...": DIR holds decode_<part>/ (e.g. a GMM baseline)

help_message="Usage: $0 [options]
  --config FILE      recipe config with sections corpus/manifests/features/lang ($config)
  --stage N          first stage to run ($stage)
  --stop-stage N     last stage to run ($stop_stage)
  --nj N             parallel jobs ($nj)
  --corpus DIR       corpus directory ($corpus)
  --real-parts LIST  real-speech check sets, \"\" to skip ($real_parts)
  --device DEV       cpu or cuda for the neural stages ($device)
  --am-systems LIST  systems to train, names of conf/systems/*.yaml (\"$am_systems\")
  --ali-source SRC   k2 | gmm: aligner behind the tree and targets ($ali_source)
  --gmm-baseline B   true | false: Kaldi GMM-HMM mono system as baseline and cross-check ($gmm_baseline)
  --am-jobs N        AM systems trained and decoded side by side ($am_jobs)
  --seeds LIST       seeds of every system (\"$seeds\")
  --extra-seeds LIST more seeds for the systems in --extra-seed-systems (\"$extra_seeds\")
  --extra-seed-systems LIST  (\"$extra_seed_systems\")
  --decode-scales LIST  acoustic scales swept on dev (\"$decode_scales\")
  --keep-loglikes BOOL  keep the AMs' log-likelihood arks after decoding ($keep_loglikes)
  --extra-result-rows LIST  NAME=DIR rows added to exp/RESULTS.md (\"$extra_result_rows\")
Stages:
  0  check environment and config
  1  synthesize the synth-en corpus (local/synth-en/make_corpus.py)
  2  prepare the real-speech Asterisk check set (local/asterisk/prepare.py)
  3  lhotse manifests (steps/make_manifests.py)
  4  lang: lexicon, phones, words, BPE (steps/prepare_lang.py)
  5  fbank features + global CMVN (steps/compute_fbank.py, steps/compute_cmvn.py)
  6  data summary: hours, utterances, speakers, OOV rate per split
  7  flat-start k2 aligner (steps/train_aligner.py); Kaldi GMM-HMM mono system (steps/train_gmm_mono.py)
  8  forced alignment of every synthetic part (k2, GMM); accuracy vs the synthesizers' timings
  9  senone decision tree (steps/build_tree.py)
  10 frame targets: senone, monophone, subword (steps/make_targets.py)
  11 decoding graph HCLG from lang + senone tree + n-gram LM of the LM text (steps/make_graph.py)
  12 teacher LMs for senones, monophones, subwords (steps/train_lm.py)
  13 teacher posteriors (top-k per frame, ark/scp) for the train and dev parts
  14 train every AM system in --am-systems for every seed (steps/train_am.py)
  15 dev frame accuracy of every system (steps/eval_am.py) -> exp/frame_accuracy_<dev>.md
  16 decode dev (acoustic-scale sweep) and every test part with the dev-best scale, for every
     system and seed (steps/compute_loglikes.py, steps/decode.py) -> exp/am_<sys>/seed<k>/decode_<part>/
  17 k2 vs Kaldi decoder cross-check on dev (steps/compare_decoders.py); results table
     exp/RESULTS.md (+ aligner comparison, decoder cross-check) and exp/plots/wer_systems.png"

. ./path.sh
. ./cmd.sh
. utils/background.sh
. utils/parse_options.sh

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# The seeds of system $1: $seeds, plus $extra_seeds for the systems in $extra_seed_systems.
system_seeds() {
  local s="$seeds"
  [[ " $extra_seed_systems " == *" $1 "* ]] && s="$s $extra_seeds"
  echo $s | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' '
}

case $ali_source in
  k2) ali_dir=exp/ali_mono ;;
  gmm) ali_dir=exp/mono_gmm ;;
  *) echo "ERROR: --ali-source $ali_source: expected k2 or gmm (Kaldi alignments: steps/import_kaldi_ali.py, see README)" >&2; exit 1 ;;
esac
use_gmm=false; { $gmm_baseline || [ $ali_source = gmm ]; } && use_gmm=true

all_parts="$train_part $eval_parts $real_parts"
parts_csv=$(echo $all_parts | tr ' ' ',')
mkdir -p exp/log
# Record exactly how this run was invoked (a forgotten long command line is a lost experiment).
echo "$0 $*  # $(date)" >> exp/log/run.sh.commands

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: check environment and config $config"
  python -m lm2am.doctor
  steps/check_config.py "$config"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: synthesize synth-en into $corpus"
  local/synth-en/make_corpus.py --config "$config" --nj $nj "$corpus" 2>&1 | tee exp/log/make_corpus.log
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ -n "$real_parts" ]; then
  log "Stage 2: real-speech check set (Asterisk prompts) into $corpus"
  local/asterisk/prepare.py --config "$config" "$corpus" 2>&1 | tee exp/log/asterisk.log
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: lhotse manifests for $all_parts"
  steps/make_manifests.py --config "$config" --nj $nj --parts "$parts_csv" "$corpus" data/manifests
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: lang (lexicon, phones, words, BPE) in data/lang"
  steps/prepare_lang.py --config "$config" --manifests data/manifests --parts "$parts_csv" \
    --lm-text "$corpus/lm_text/lm_text.txt" data/lang 2>&1 | tee exp/log/prepare_lang.log
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: fbank features and global CMVN in data/fbank"
  n=$(echo $all_parts | wc -w); [ $n -gt $nj ] && n=$nj
  $train_cmd JOB=1:$n data/fbank/log/fbank.JOB.log \
    steps/compute_fbank.py --config "$config" --lang data/lang --parts "$parts_csv" \
      --job JOB --num-jobs $n data/manifests data/fbank
  steps/compute_cmvn.py data/fbank/cuts_$train_part.jsonl.gz data/fbank/global_cmvn.ark
  steps/validate_data.py --manifest-dir data/manifests --fbank-dir data/fbank --parts "$parts_csv"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: data summary"
  steps/data_summary.py --parts "$parts_csv" --lang data/lang data/fbank
fi

synth_parts="$train_part $eval_parts"

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: flat-start aligner in exp/ali_mono"
  steps/train_aligner.py --config "$config" --device $device \
    data/fbank/cuts_$train_part.jsonl.gz data/lang exp/ali_mono
  if $use_gmm; then
    log "Stage 7: Kaldi GMM-HMM monophone system in exp/mono_gmm"
    steps/train_gmm_mono.py --config "$config" data/fbank/cuts_$train_part.jsonl.gz data/lang exp/mono_gmm
  fi
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  for part in $synth_parts; do
    log "Stage 8: align $part ($nj jobs)"
    $train_cmd JOB=1:$nj exp/ali_mono/log/align_$part.JOB.log \
      steps/align.py --job JOB --num-jobs $nj --device $device \
        data/fbank/cuts_$part.jsonl.gz data/lang exp/ali_mono
  done
  steps/score_alignment.py "$corpus" $train_part data/lang exp/ali_mono
  if $use_gmm; then
    for part in $synth_parts; do
      log "Stage 8: align $part with the GMM system ($nj jobs)"
      $train_cmd JOB=1:$nj exp/mono_gmm/log/align_$part.JOB.log \
        steps/align_gmm.py --config "$config" --job JOB --num-jobs $nj \
          data/fbank/cuts_$part.jsonl.gz data/lang exp/mono_gmm
    done
    steps/score_alignment.py "$corpus" $train_part data/lang exp/mono_gmm
    steps/compare_aligners.py --corpus "$corpus" --lang data/lang --parts "$(echo $synth_parts | tr ' ' ',')" \
      --md exp/alignment_accuracy.md --png exp/plots/alignment_accuracy.png gmm=exp/mono_gmm k2=exp/ali_mono
  fi
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  log "Stage 9: senone tree in exp/tree (alignments: $ali_dir)"
  steps/build_tree.py --config "$config" data/fbank/cuts_$train_part.jsonl.gz data/lang $ali_dir exp/tree
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  for part in $synth_parts; do
    log "Stage 10: frame targets for $part in data/targets"
    steps/make_targets.py --corpus-dir "$corpus" --plot $([ $part = $train_part ] && echo 2 || echo 0) \
      data/fbank/cuts_$part.jsonl.gz data/lang $ali_dir exp/tree data/targets
  done
  steps/validate_data.py --fbank-dir data/fbank --targets-dir data/targets --parts "$(echo $synth_parts | tr ' ' ',')"
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: decoding graph in data/lang/graph"
  steps/make_graph.py --config "$config" --lm-text "$corpus/lm_text/lm_text.txt" \
    data/lang exp/tree/tree.json data/lang/graph
  if $use_gmm; then
    log "Stage 11: monophone decoding graph of the GMM system in exp/mono_gmm/graph"
    steps/make_graph.py --config "$config" --lm-text "$corpus/lm_text/lm_text.txt" \
      data/lang exp/mono_gmm/tree.json exp/mono_gmm/graph
  fi
fi

teacher_units="monophone senone subword"   # exp/lm_<unit>; the LM code calls monophones "phone"
dev_part=$(echo $eval_parts | cut -d' ' -f1)

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  for unit in $teacher_units; do
    log "Stage 12: teacher LM for $unit in exp/lm_$unit"
    $cuda_cmd exp/lm_$unit/log/run.log \
      steps/train_lm.py --config "$config" --unit $([ $unit = monophone ] && echo phone || echo $unit) \
        --tree-dir exp/tree --lm-text "$corpus/lm_text/lm_text.txt" --targets-dir data/targets \
        --train-part $train_part --dev-cuts data/fbank/cuts_$dev_part.jsonl.gz --device $device \
        data/lang exp/lm_$unit
  done
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  for unit in $teacher_units; do
    for part in $train_part $dev_part; do
      log "Stage 13: $unit teacher posteriors for $part ($nj jobs)"
      $train_cmd JOB=1:$nj exp/lm_$unit/log/post_$part.JOB.log \
        steps/compute_posteriors.py --config "$config" --job JOB --num-jobs $nj --device $device \
          --lang-dir data/lang --tree-dir exp/tree exp/lm_$unit data/targets $part exp/lm_$unit/post_$part
      steps/compute_posteriors.py --config "$config" --merge --num-jobs $nj --lang-dir data/lang \
        --tree-dir exp/tree exp/lm_$unit data/targets $part exp/lm_$unit/post_$part
    done
  done
fi

train_one_am() {  # train_one_am SYSTEM SEED
  log "Stage 14: train AM system $1, seed $2 in exp/am_$1/seed$2"
  $cuda_cmd exp/am_$1/seed$2/log/run.log \
    steps/train_am.py --config "$config" --system conf/systems/$1.yaml \
      --exp-dir exp/am_$1/seed$2 --seed $2 --train-part $train_part \
      --dev-part $dev_part --device $device
}

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  max_bg=$am_jobs
  for sys in $am_systems; do
    for seed in $(system_seeds $sys); do
      bg_run train_one_am $sys $seed
    done
  done
  bg_wait
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  log "Stage 15: dev frame accuracy of every system"
  for sys in $am_systems; do
    for seed in $(system_seeds $sys); do
      steps/eval_am.py --exp-dir exp/am_$sys/seed$seed --part $dev_part --device $device \
        --out exp/am_$sys/seed$seed/eval_$dev_part.json
    done
  done
  steps/frame_accuracy_report.py exp $dev_part
fi

test_parts="$(echo $eval_parts | awk '{$1 = ""; print}') $real_parts"   # every part after dev
test_parts=$(echo $test_parts)

decode_one_am() {  # decode_one_am SYSTEM SEED: dev (scale sweep), then the test parts at the dev-best scale
  local sys=$1 seed=$2 dir=exp/am_$1/seed$2 out part scale_opts fp sf b
  [ -f $dir/final.pt ] || { echo "ERROR: $dir/final.pt is missing; run stage 14 for $sys seed $seed" >&2; exit 1; }
  for part in $dev_part $test_parts; do
    out=$dir/decode_$part
    if [ $part = $dev_part ]; then
      scale_opts="--scales $scales_csv"
    else
      [ -f $dir/decode_$dev_part/best_scale ] || \
        { echo "ERROR: $dir/decode_$dev_part/best_scale is missing; decode $dev_part first (stage 16)" >&2; exit 1; }
      scale_opts="--acoustic-scale $(cat $dir/decode_$dev_part/best_scale)"
    fi
    fp=$(steps/fingerprint.py --config "$config" --section decode --param "$scale_opts" \
      $dir/final.pt data/fbank/cuts_$part.jsonl.gz data/lang/graph/HCLG.pt)
    if [ -f $out/.done ] && [ "$(cat $out/.done)" = "$fp" ]; then
      log "Stage 16: $out is up to date, skipping"; continue
    fi
    log "Stage 16: decode $part with $sys seed $seed ($scale_opts) in $out"
    $decode_cmd $dir/log/loglikes_$part.log \
      steps/compute_loglikes.py --device $device --cmvn data/fbank/global_cmvn.ark \
        --train-cuts data/targets/cuts_$train_part.jsonl.gz \
        $dir/final.pt data/fbank/cuts_$part.jsonl.gz $out/loglikes.scp
    sf=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["subsampling_factor"])' $out/loglikes.json)
    $decode_cmd $dir/log/decode_$part.log \
      steps/decode.py --config "$config" --graph data/lang/graph --device $device \
        --subsampling-factor $sf $scale_opts --ref data/fbank/cuts_$part.jsonl.gz --set-name $part \
        $out/loglikes.scp $out
    if [ $part = $dev_part ]; then
      b=$(cat $out/best_scale)
      echo "  $sys seed $seed $part: best acoustic scale $b: $(grep "^$b " $out/scales.txt | cut -d' ' -f2-)"
    else
      echo "  $sys seed $seed $part: $(head -n 1 $out/wer-$part)"
    fi
    $keep_loglikes || rm -f $out/loglikes.ark $out/loglikes.scp $out/.loglikes.done
    echo "$fp" > $out/.done
  done
}

decode_gmm() {  # the GMM baseline: dev (scale sweep), then the test parts at the dev-best scale
  local part out opts fp
  for part in $dev_part $test_parts; do
    out=exp/mono_gmm/decode_$part
    if [ $part = $dev_part ]; then opts="--sweep"
    else opts="--acoustic-scale $(cat exp/mono_gmm/decode_$dev_part/best_scale)"; fi
    fp=$(steps/fingerprint.py --config "$config" --section gmm --param "$opts" exp/mono_gmm/final.mdl \
      data/fbank/cuts_$part.jsonl.gz exp/mono_gmm/graph/HCLG.fst)
    if [ -f $out/.done ] && [ "$(cat $out/.done)" = "$fp" ]; then
      log "Stage 16: $out is up to date, skipping"; continue
    fi
    log "Stage 16: decode $part with the GMM system ($opts)"
    $decode_cmd exp/mono_gmm/log/decode_$part.log \
      steps/decode_gmm.py --config "$config" $opts data/fbank/cuts_$part.jsonl.gz exp/mono_gmm $out
    echo "  gmm_mono $part: $(head -n 1 $out/wer-$part)"
    echo "$fp" > $out/.done
  done
}

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  # Per model and part: log-likelihoods (AM main output minus log priors) -> k2 decoding and
  # scoring (wer-<part>, errs-<part>.txt, sclite cross-check). Dev is decoded once and rescored
  # at every scale of $decode_scales (best_scale); the test parts use that scale. A done marker
  # (model, references, graph, decode config, scale) makes a rerun skip what is up to date.
  scales_csv=$(echo $decode_scales | tr ' ' ',')
  max_bg=$am_jobs
  for sys in $am_systems; do
    for seed in $(system_seeds $sys); do
      bg_run decode_one_am $sys $seed
    done
  done
  $use_gmm && bg_run decode_gmm
  bg_wait
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  # Cross-check of the k2 decoder by Kaldi's FasterDecoder: the first system's first seed on dev,
  # same log-likelihoods, graph and scale (steps/compare_decoders.py).
  x=$(echo $am_systems | cut -d' ' -f1); dir=exp/am_$x/seed$(system_seeds $x | cut -d' ' -f1)
  cmp_dir=exp/compare_decoders_$dev_part
  fp=$(steps/fingerprint.py --config "$config" --section decode $dir/final.pt $dir/decode_$dev_part/best_scale \
    data/fbank/cuts_$dev_part.jsonl.gz data/lang/graph/HCLG.pt)
  if [ -f $cmp_dir/.done ] && [ "$(cat $cmp_dir/.done)" = "$fp" ]; then
    log "Stage 17: $cmp_dir is up to date, skipping"
  else
    log "Stage 17: k2 decoder vs Kaldi's decoder on $dev_part ($dir) in $cmp_dir"
    $decode_cmd $cmp_dir/log/loglikes.log \
      steps/compute_loglikes.py --device $device --cmvn data/fbank/global_cmvn.ark \
        --train-cuts data/targets/cuts_$train_part.jsonl.gz \
        $dir/final.pt data/fbank/cuts_$dev_part.jsonl.gz $cmp_dir/loglikes.scp
    sf=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["subsampling_factor"])' $cmp_dir/loglikes.json)
    $decode_cmd $cmp_dir/log/compare.log \
      steps/compare_decoders.py --config "$config" --graph data/lang/graph --subsampling-factor $sf \
        --acoustic-scale $(cat $dir/decode_$dev_part/best_scale) --ref data/fbank/cuts_$dev_part.jsonl.gz \
        --title "$x seed ${dir##*seed}, $dev_part" $cmp_dir/loglikes.scp $cmp_dir
    rm -f $cmp_dir/loglikes.ark $cmp_dir/loglikes.scp $cmp_dir/.loglikes.done
    echo "$fp" > $cmp_dir/.done
  fi
  log "Stage 17: results table exp/RESULTS.md"
  specs=""
  for sys in $am_systems; do specs="$specs $sys:$(system_seeds $sys | tr ' ' ',' | sed 's/,$//')"; done
  extra_opts=""
  $use_gmm && [ -f exp/mono_gmm/decode_$dev_part/best_scale ] && extra_opts="--extra-row gmm_mono=exp/mono_gmm"
  for r in $extra_result_rows; do extra_opts="$extra_opts --extra-row $r"; done
  for f in exp/alignment_accuracy.md $cmp_dir/compare_decoders.md; do
    [ -f $f ] && extra_opts="$extra_opts --append $f"
  done
  steps/make_results.py --config "$config" --dev-part $dev_part --test-parts "$test_parts" \
    --scales "$decode_scales" $extra_opts exp $specs
fi

log "Done (stages $stage..$stop_stage)."
