#!/usr/bin/env bash
# lm2am recipe on the embedded synthetic corpus "synth-en" (flite/festival/espeak-ng speech,
# WordNet transcripts, an LM-only text pool) plus the real-speech Asterisk check set.
#
#   ./run.sh [--config conf/demo.yaml] [--stage N] [--stop-stage M] [--nj 2]
#
# Stages 0-2 (checks, synthesis, Asterisk) are this recipe's own; 3-17 are the shared driver's
# (steps/run_hybrid.sh), the same in every recipe. corpus/, data/ and exp/ are outputs: delete
# any of them and rerun to rebuild. Every stage skips work that is already done (done markers
# hash the config section and inputs, so an edited config or input re-runs the stage).
set -euo pipefail

. steps/run_hybrid_options.sh   # the options shared with every recipe (--help lists them)
config=conf/demo.yaml   # corpus size: conf/tiny.yaml (CI), conf/demo.yaml, conf/large.yaml (GPU)
corpus=corpus           # where the corpus is generated (LibriSpeech layout)
train_part=train-synth
eval_parts="dev-synth test-synth"
real_parts="test-asterisk"   # real, out-of-domain speech; set to "" to skip it
# The comparison: one AM per system (conf/systems/<name>.yaml) and seed. Edit freely.
am_systems=demo         # ce interp_lam0.05 hier_w0.1_T1 (CE + the KD sweep's dev picks); "paper": the ablation
gmm_baseline=true       # also train Kaldi's GMM-HMM mono system: aligner comparison, GMM row in RESULTS.md
am_jobs=2               # AMs trained / decoded side by side (each with train.num_threads threads)
extra_seeds="2 3"       # more seeds for $extra_seed_systems (RESULTS.md: mean ± std over seeds)
extra_seed_systems=demo  # all three with 3 seeds

help_message="Usage: $0 [options]
  --corpus DIR       corpus directory ($corpus)
  --real-parts LIST  real-speech check sets, \"\" to skip ($real_parts)
$(hybrid_options_help)
Stages:
  0  check environment and config
  1  synthesize the synth-en corpus and its LM text (local/synth-en/make_corpus.py)
  2  prepare the real-speech Asterisk check set (local/asterisk/prepare.py)
$(hybrid_stages_help)"

_cmdline="$0 $*"   # before utils/parse_options.sh consumes the arguments
. ./path.sh
. utils/lib/log.sh
. utils/parse_options.sh
hybrid_options_check "$0"   # --stage/--stop-stage/--nj ... before anything is written

hybrid=(steps/run_hybrid.sh --corpus "$corpus" --lm-text "$corpus/lm_text/lm_text.txt" --train-part "$train_part"
        --eval-parts "$eval_parts" --real-parts "$real_parts" --ref-timings true)
hybrid_options_args hybrid
"${hybrid[@]}" --stop-stage -1   # checks the driver's options before any work
mkdir -p exp/log
# Record exactly how this run was invoked (a forgotten long command line is a lost experiment).
echo "$_cmdline  # $(date)" >> exp/log/run.sh.commands

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

"${hybrid[@]}"   # stages 3-17
log "Done (stages $stage..$stop_stage)."
