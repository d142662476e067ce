#!/usr/bin/env bash
# lm2am recipe on LibriSpeech (or mini_librispeech) read from a copy already on disk: nothing is
# downloaded. Get the parts from openslr.org/12 (LibriSpeech) or /31 (mini_librispeech) and,
# for a real LM text, librispeech-lm-norm.txt.gz from openslr.org/11.
#
#   ./run.sh --librispeech-dir /data/LibriSpeech [--config conf/librispeech.yaml] [--stage N] [--stop-stage M]
#   mini_librispeech: ./run.sh --librispeech-dir /data/LibriSpeech --parts "train-clean-5 dev-clean-2" \
#                       --train-part train-clean-5 --dev-part dev-clean-2
#
# Stages 0-2 are this recipe's own (checks, the LM text); 3-17 are the shared driver's
# (steps/run_hybrid.sh), the same in every recipe. The parts other than --train-part and
# --dev-part are test parts. data/ and exp/ are outputs: delete any of them and rerun to rebuild.
# Every stage skips work that is already done (done markers hash the config section and inputs).
set -euo pipefail

. steps/run_hybrid_options.sh  # the options shared with every recipe (--help lists them)
config=conf/librispeech.yaml   # conf/fake.yaml: the tiny fake corpus of tests/test_librispeech.py
nj=4                           # parallel jobs
am_systems="ce aux_senone hier"   # names of conf/systems/*.yaml
librispeech_dir=/data/LibriSpeech   # holds train-clean-100/, dev-clean/, ... (openslr.org/12 layout)
parts="train-clean-100 dev-clean test-clean"
train_part=train-clean-100
dev_part=dev-clean
lm_norm=""                     # librispeech-lm-norm.txt[.gz]; "" = <librispeech-dir>/../librispeech-lm-norm.txt
lm_max_sentences=500000        # LM sentences sampled from it ("" = all 40M: slow lexicon/g2p and graph)

help_message="Usage: $0 [options]
  --librispeech-dir DIR    on-disk LibriSpeech copy with the part directories ($librispeech_dir)
  --parts LIST             parts to prepare; those after train and dev are test parts (\"$parts\")
  --train-part NAME        the training part ($train_part)
  --dev-part NAME          the dev part ($dev_part)
  --lm-norm FILE           librispeech-lm-norm.txt[.gz] (default: next to --librispeech-dir)
  --lm-max-sentences N     LM sentences sampled from it, \"\" = all ($lm_max_sentences)
$(hybrid_options_help)
Stages:
  0  check environment, config and the LibriSpeech copy
  1  LM text in data/local/lm: librispeech-lm-norm.txt if present, else the training transcripts
     (local/librispeech/prepare_lm_text.py); the corpus itself is read in place
  2  (no real-speech check set in this recipe)
$(hybrid_stages_help)"

_cmdline="$0 $*"   # before utils/parse_options.sh consumes the arguments
. ./path.sh
. utils/lib/log.sh
. utils/parse_options.sh
hybrid_options_check "$0"   # --stage/--stop-stage/--nj ... before anything is written

[ -n "$lm_norm" ] || lm_norm="$(dirname "$librispeech_dir")/librispeech-lm-norm.txt"
for p in $train_part $dev_part; do
  case " $parts " in *" $p "*) ;; *) echo "$0: --train-part/--dev-part $p is not in --parts \"$parts\"; add it" >&2; exit 1 ;; esac
done
test_parts=$(for p in $parts; do [ $p = $train_part ] || [ $p = $dev_part ] || echo $p; done)
lm_text=data/local/lm/lm_text.txt
hybrid=(steps/run_hybrid.sh --corpus "$librispeech_dir" --lm-text "$lm_text" --train-part "$train_part"
        --eval-parts "$(echo $dev_part $test_parts)" --lazy true)
hybrid_options_args hybrid
"${hybrid[@]}" --stop-stage -1   # checks the driver's options before any work
mkdir -p exp/log
echo "$_cmdline  # $(date)" >> exp/log/run.sh.commands

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: check environment, config $config and $librispeech_dir"
  for p in $parts; do
    [ -d "$librispeech_dir/$p" ] || { echo "$0: $librispeech_dir/$p not found; unpack the part there (openslr.org/12 or /31) or fix --librispeech-dir/--parts" >&2; exit 1; }
  done
  steps/check_config.py "$config"
  python -m lm2am.doctor
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: LM text in $lm_text"
  if [ ! -f "$lm_norm" ] && [ ! -f "$lm_norm.gz" ]; then
    # No LM text: the training transcripts are the fallback, from the train part's manifest
    # (made now, as stage 3 makes it; stage 3 then skips it).
    steps/make_manifests.py --lazy --config "$config" --nj $nj --parts $train_part "$librispeech_dir" data/manifests
  fi
  local/librispeech/prepare_lm_text.py --lm-norm "$lm_norm" ${lm_max_sentences:+--max-sentences $lm_max_sentences} \
    --manifests data/manifests --train-part $train_part $lm_text 2>&1 | tee exp/log/prepare_lm_text.log
fi

"${hybrid[@]}"   # stages 3-17
log "Done (stages $stage..$stop_stage)."
