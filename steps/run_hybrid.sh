#!/usr/bin/env bash
# The shared recipe driver (the idea of ESPnet's egs2/TEMPLATE/asr1/asr.sh, kept thin): stages
# 3-17 of every lm2am recipe, from lhotse manifests to exp/RESULTS.md. A corpus's run.sh does its
# own stages 0-2 (checks, the corpus and its LM text, real-speech check sets) and calls this with
# its parts; a stage number means the same in every recipe. Each stage is a few steps/ calls, and
# each step skips work that is already done (done markers hash the config section and inputs).
#
#   steps/run_hybrid.sh [options] --corpus DIR --lm-text FILE --train-part P --eval-parts "DEV TEST..."
# e.g.:
#   steps/run_hybrid.sh --config conf/tiny.yaml --corpus corpus --lm-text corpus/lm_text/lm_text.txt \
#     --train-part train-synth --eval-parts "dev-synth test-synth" --real-parts test-asterisk
#
# Runs in the recipe directory (path.sh, cmd.sh, conf/; writes data/ and exp/). With --stop-stage
# below 3 it only checks its options (run.sh does that before its own stages).
set -euo pipefail

. steps/run_hybrid_options.sh   # --stage --config --nj --am-systems ... (shared with every run.sh)
corpus=""          # corpus in LibriSpeech layout (<corpus>/<part>/<spk>/<chapter>/)
lm_text=""         # LM text for the lexicon, BPE, teacher LMs and the graph's n-gram LM
train_part=""
eval_parts=""      # the dev part first, then the test parts
real_parts=""      # more test parts: decoded, not aligned (real, out-of-domain speech)
lazy=false         # stream manifests and features chapter by chapter (large corpora)
ref_timings=false  # the corpus has reference phone timings (*.phones.txt): score the alignments

help_message="Usage: $0 [options] --corpus DIR --lm-text FILE --train-part P --eval-parts LIST
e.g.: $0 --config conf/tiny.yaml --corpus corpus --lm-text corpus/lm_text/lm_text.txt \\
        --train-part train-synth --eval-parts \"dev-synth test-synth\"
  --corpus DIR       corpus in LibriSpeech layout (required)
  --lm-text FILE     LM text (required)
  --train-part NAME  training part (required)
  --eval-parts LIST  dev part, then test parts (required)
  --real-parts LIST  more test parts, decoded but not aligned (\"$real_parts\")
  --lazy BOOL        stream manifests and features (large corpora) ($lazy)
  --ref-timings BOOL corpus has reference phone timings to score alignments against ($ref_timings)
$(hybrid_options_help)
Stages:
$(hybrid_stages_help)"

. ./path.sh
. ./cmd.sh
. utils/background.sh
. utils/lib/log.sh
. utils/parse_options.sh
if [ "$stop_stage" = -1 ]; then   # run.sh's option check: only the driver's own options
  stop_stage=$stage
  check_only=true
else
  check_only=false
fi
hybrid_options_check "$0"

case $ali_source in
  k2) ali_dir=exp/ali_mono ;;
  gmm) ali_dir=exp/mono_gmm ;;
  am) ali_dir=exp/ali_am ;;
  *) echo "ERROR: --ali-source $ali_source: expected k2, gmm or am (Kaldi alignments: steps/import_kaldi_ali.py, see README)" >&2; exit 1 ;;
esac
for v in corpus lm_text train_part eval_parts; do
  [ -n "${!v}" ] || { echo "$0: --${v//_/-} is required; see $0 --help" >&2; exit 1; }
done
if [ -n "$sweep" ]; then  # a bad sweep file fails here, before any work
  [ -f "$sweep" ] || { echo "ERROR: --sweep $sweep: no such file (sweeps live in conf/sweeps/)" >&2; exit 1; }
  steps/expand_sweep.py --dry-run --config "$config" "$sweep" conf/systems > /dev/null
fi
{ ! $check_only && [ "$stop_stage" -ge 3 ]; } || exit 0

# --am-systems presets (names that are not system files): paper = the whole ablation of the
# paper with its settings; demo = the budget set: CE and the dev picks of conf/sweeps/kd.yaml for
# label interpolation (lambda 0.05) and the hierarchical system (head weights 0.1, T 1).
expand_systems() {
  case "$1" in
    paper) echo "ce interp_0.1 interp_0.3 aux_monophone aux_senone aux_subword hier hier_no_senone hier_no_monophone hier_no_subword" ;;
    demo) echo "ce interp_lam0.05 hier_w0.1_T1" ;;
    *) echo "$1" ;;
  esac
}
am_systems=$(expand_systems "$am_systems"); extra_seed_systems=$(expand_systems "$extra_seed_systems")
if [ -n "$sweep" ]; then  # the sweep's variants (conf/systems/<variant>.yaml) replace --am-systems
  am_systems=$(steps/expand_sweep.py --config "$config" "$sweep" conf/systems)
  extra_seed_systems=""
  log "--sweep $sweep: $(echo $am_systems | wc -w) variants, trained and decoded on dev only: $am_systems"
fi
for sys in $am_systems; do
  [ -f conf/systems/$sys.yaml ] || { echo "ERROR: --am-systems: conf/systems/$sys.yaml does not exist; add it or use a preset (paper, demo)" >&2; exit 1; }
done
# --data-sizes: each system again on nested subsets of the training part (train.max_hours), run
# as exp/am_<system>_h<hours>/ with the seeds of <system>; hours named as hours_tag writes them.
data_sizes=$(echo $(for h in $data_sizes; do hours_tag "$h"; echo; done))
declare -A base_system=()   # exp/am_<name>/ of a data size -> its system
size_systems=""
for h in $data_sizes; do
  for sys in $am_systems; do size_systems="$size_systems ${sys}_h$h"; base_system[${sys}_h$h]=$sys; done
done

use_gmm=false; { $gmm_baseline || [ $ali_source = gmm ]; } && use_gmm=true
lazy_opt=""; $lazy && lazy_opt=--lazy
all_parts="$train_part $eval_parts $real_parts"
parts_csv=$(echo $all_parts | tr ' ' ',')
ali_parts="$train_part $eval_parts"   # aligned and given frame targets
dev_part=$(echo $eval_parts | cut -d' ' -f1)
test_parts="$(echo $eval_parts | awk '{$1 = ""; print}') $real_parts"   # every part after dev
test_parts=$(echo $test_parts)
[ -n "$sweep" ] && test_parts=""   # a sweep is decided on dev; the test parts are decoded with its picks
teacher_units="monophone senone subword"   # exp/lm_<unit>; the LM code calls monophones "phone"

# The seeds of system $1: $seeds, plus $extra_seeds for the systems in $extra_seed_systems (a
# data-size run <system>_h<hours>: those of <system>).
system_seeds() {
  local s="$seeds" sys=${base_system[$1]:-$1}
  [[ " $extra_seed_systems " == *" $sys "* ]] && s="$s $extra_seeds"
  echo $s | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' '
}

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: lhotse manifests for $all_parts"
  steps/make_manifests.py $lazy_opt --config "$config" --nj $nj --parts "$parts_csv" "$corpus" data/manifests
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: lang (lexicon, phones, words, BPE) in data/lang"
  steps/prepare_lang.py --config "$config" --manifests data/manifests --parts "$parts_csv" \
    --lm-text "$lm_text" data/lang 2>&1 | tee exp/log/prepare_lang.log
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: fbank features and global CMVN in data/fbank"
  n=$(echo $all_parts | wc -w); [ $n -gt $nj ] && n=$nj
  $train_cmd JOB=1:$n data/fbank/log/fbank.JOB.log \
    steps/compute_fbank.py $lazy_opt --config "$config" --lang data/lang --parts "$parts_csv" \
      --job JOB --num-jobs $n data/manifests data/fbank
  steps/compute_cmvn.py data/fbank/cuts_$train_part.jsonl.gz data/fbank/global_cmvn.ark
  steps/validate_data.py --manifest-dir data/manifests --fbank-dir data/fbank --parts "$parts_csv"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: data summary"
  steps/data_summary.py --parts "$parts_csv" --lang data/lang data/fbank
fi

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
  for part in $ali_parts; do
    log "Stage 8: align $part ($nj jobs)"
    $train_cmd JOB=1:$nj exp/ali_mono/log/align_$part.JOB.log \
      steps/align.py --job JOB --num-jobs $nj --device $device \
        data/fbank/cuts_$part.jsonl.gz data/lang exp/ali_mono
  done
  $ref_timings && steps/score_alignment.py "$corpus" $train_part data/lang exp/ali_mono
  if [ $ali_source = am ]; then
    # Second pass (Kaldi's nnet realignment): the AM trained on the first pass's tree aligns
    # again; stages 9-10 then rebuild the tree and targets from exp/ali_am.
    [ -f "$realign_am" ] || { echo "ERROR: --ali-source am: $realign_am does not exist; train it first (stages 9-14 with --ali-source k2) or set --realign-am" >&2; exit 1; }
    steps/realign.py --prepare --am "$realign_am" --tree exp/tree/tree.json --src-ali exp/ali_mono exp/ali_am
    for part in $ali_parts; do
      log "Stage 8: realign $part with $realign_am ($nj jobs)"
      $train_cmd JOB=1:$nj exp/ali_am/log/align_$part.JOB.log \
        steps/realign.py --job JOB --num-jobs $nj --device $device \
          --cuts data/fbank/cuts_$part.jsonl.gz --lang data/lang exp/ali_am
    done
    $ref_timings && steps/score_alignment.py "$corpus" $train_part data/lang exp/ali_am
  fi
  if $use_gmm; then
    for part in $ali_parts; do
      log "Stage 8: align $part with the GMM system ($nj jobs)"
      $train_cmd JOB=1:$nj exp/mono_gmm/log/align_$part.JOB.log \
        steps/align_gmm.py --config "$config" --job JOB --num-jobs $nj \
          data/fbank/cuts_$part.jsonl.gz data/lang exp/mono_gmm
    done
    if $ref_timings; then
      steps/score_alignment.py "$corpus" $train_part data/lang exp/mono_gmm
      steps/compare_aligners.py --corpus "$corpus" --lang data/lang --parts "$(echo $ali_parts | tr ' ' ',')" \
        --md exp/alignment_accuracy.md --png exp/plots/alignment_accuracy.png gmm=exp/mono_gmm k2=exp/ali_mono
    fi
  fi
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  log "Stage 9: senone tree in exp/tree (alignments: $ali_dir)"
  steps/build_tree.py --config "$config" data/fbank/cuts_$train_part.jsonl.gz data/lang $ali_dir exp/tree
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  timing_opts=(); $ref_timings && timing_opts=(--corpus-dir "$corpus")
  for part in $ali_parts; do
    log "Stage 10: frame targets for $part in data/targets"
    steps/make_targets.py "${timing_opts[@]}" --plot $([ $part = $train_part ] && echo 2 || echo 0) \
      data/fbank/cuts_$part.jsonl.gz data/lang $ali_dir exp/tree data/targets
  done
  steps/validate_data.py --fbank-dir data/fbank --targets-dir data/targets --parts "$(echo $ali_parts | tr ' ' ',')"
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: decoding graph in data/lang/graph"
  steps/make_graph.py --config "$config" --lm-text "$lm_text" --transcripts data/fbank/cuts_$train_part.jsonl.gz data/lang exp/tree/tree.json data/lang/graph
  if $use_gmm; then
    log "Stage 11: monophone decoding graph of the GMM system in exp/mono_gmm/graph"
    steps/make_graph.py --config "$config" --lm-text "$lm_text" --transcripts data/fbank/cuts_$train_part.jsonl.gz data/lang exp/mono_gmm/tree.json exp/mono_gmm/graph
  fi
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  for unit in $teacher_units; do
    log "Stage 12: teacher LM for $unit in exp/lm_$unit"
    $cuda_cmd exp/lm_$unit/log/run.log \
      steps/train_lm.py --config "$config" --unit $([ $unit = monophone ] && echo phone || echo $unit) \
        --tree-dir exp/tree --lm-text "$lm_text" --targets-dir data/targets \
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

train_one_am() {  # train_one_am SYSTEM SEED [HOURS]: with HOURS on that subset, in exp/am_<system>_h<hours>
  local name=$1 subset=()
  if [ -n "${3:-}" ]; then name=${1}_h$3; subset=(--max-hours $3); fi
  log "Stage 14: train AM system $1${3:+ on $3 h of $train_part}, seed $2 in exp/am_$name/seed$2"
  $cuda_cmd exp/am_$name/seed$2/log/run.log \
    steps/train_am.py --config "$config" --system conf/systems/$1.yaml "${subset[@]}" \
      --exp-dir exp/am_$name/seed$2 --seed $2 --train-part $train_part \
      --dev-part $dev_part --device $device
}

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  max_bg=$am_jobs
  for sys in $am_systems; do
    for seed in $(system_seeds $sys); do
      bg_run train_one_am $sys $seed
    done
  done
  for h in $data_sizes; do
    for sys in $am_systems; do
      for seed in $(system_seeds $sys); do
        bg_run train_one_am $sys $seed $h
      done
    done
  done
  bg_wait
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  log "Stage 15: dev frame accuracy of every system"
  for sys in $am_systems $size_systems; do
    for seed in $(system_seeds $sys); do
      steps/eval_am.py --exp-dir exp/am_$sys/seed$seed --part $dev_part --device $device \
        --out exp/am_$sys/seed$seed/eval_$dev_part.json
    done
  done
  steps/frame_accuracy_report.py exp $dev_part
fi

decode_opts=(--cmd "$decode_cmd" --config "$config" --device "$device" --nj "$nj" --dev-part "$dev_part"
             --test-parts "$test_parts" --train-cuts "data/targets/cuts_$train_part.jsonl.gz")

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  log "Stage 16: decode $dev_part (scales $decode_scales), then ${test_parts:-no test parts} at the dev-best scale"
  max_bg=$am_jobs
  for sys in $am_systems $size_systems; do
    for seed in $(system_seeds $sys); do
      bg_run steps/decode_am.sh "${decode_opts[@]}" --scales "$decode_scales" --keep-loglikes $keep_loglikes \
        --name "$sys seed $seed" data/lang/graph data/fbank exp/am_$sys/seed$seed
    done
  done
  $use_gmm && [ -z "$sweep" ] && bg_run steps/decode_am.sh "${decode_opts[@]}" --name gmm_mono exp/mono_gmm/graph data/fbank exp/mono_gmm
  bg_wait
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ] && [ -n "$sweep" ]; then
  log "Stage 17: dev table and picks of the sweep $sweep"
  steps/sweep_table.py --dev-part $dev_part --seeds "$seeds" "$sweep" exp  # prints how to decode the picks
elif [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  x=$(echo $am_systems | cut -d' ' -f1); first_seed=$(system_seeds $x | cut -d' ' -f1)
  cmp_dir=exp/compare_decoders_$dev_part
  log "Stage 17: k2 decoder vs Kaldi's decoder on $dev_part (exp/am_$x/seed$first_seed) in $cmp_dir"
  steps/compare_decoders.sh --cmd "$decode_cmd" --config "$config" --device $device --part $dev_part \
    --train-cuts data/targets/cuts_$train_part.jsonl.gz --title "$x seed $first_seed, $dev_part" \
    data/lang/graph data/fbank exp/am_$x/seed$first_seed $cmp_dir
  log "Stage 17: results table exp/RESULTS.md"
  specs=""
  for sys in $am_systems; do specs="$specs $sys:$(system_seeds $sys | tr ' ' ',' | sed 's/,$//')"; done
  extra_opts=""
  $use_gmm && [ -f exp/mono_gmm/decode_$dev_part/best_scale ] && extra_opts="--extra-row gmm_mono=exp/mono_gmm"
  for r in $extra_result_rows; do extra_opts="$extra_opts --extra-row $r"; done
  if [ -n "$data_sizes" ]; then
    log "Stage 17: data-size curve exp/data_size.md, exp/plots/data_size.png ($data_sizes h and all of $train_part)"
    steps/data_size_report.py --dev-part $dev_part --test-parts "$test_parts" --sizes "$data_sizes" \
      --train-cuts data/targets/cuts_$train_part.jsonl.gz exp $specs > /dev/null
    extra_opts="$extra_opts --append exp/data_size.md"
  fi
  for f in exp/alignment_accuracy.md $cmp_dir/compare_decoders.md; do
    [ -f $f ] && extra_opts="$extra_opts --append $f"
  done
  steps/make_results.py --config "$config" --dev-part $dev_part --test-parts "$test_parts" \
    --scales "$decode_scales" $extra_opts exp $specs
  for part in $dev_part $test_parts; do  # where the errors are, for corpora that describe each utterance
    if [ ! -f $corpus/$part/utt_info.tsv ] || [ ! -f $corpus/speakers.tsv ]; then continue; fi
    rows=""
    for sys in $am_systems; do
      s=$(system_seeds $sys | cut -d' ' -f1)
      if [ -f exp/am_$sys/seed$s/decode_$part/hyp.trn ]; then rows="$rows $sys=exp/am_$sys/seed$s/decode_$part"; fi
    done
    if [ -f exp/mono_gmm/decode_$part/hyp.trn ]; then rows="$rows gmm_mono=exp/mono_gmm/decode_$part"; fi
    if [ -n "$rows" ]; then
      steps/wer_breakdown.py --corpus $corpus --part $part --out exp/wer_breakdown_$part.md $rows > /dev/null
    fi
  done
fi
