# shellcheck shell=bash
# The options of the shared recipe driver steps/run_hybrid.sh that every recipe's run.sh also
# takes, with their defaults and help, declared once. Sourced (not run) by the driver and by each
# run.sh, which then sets its own defaults, builds its --help from hybrid_options_help and
# hybrid_stages_help, parses its command line (utils/parse_options.sh) and passes the values on
# with hybrid_options_args:
#   . steps/run_hybrid_options.sh; nj=4; ...; . utils/parse_options.sh
#   args=(); hybrid_options_args args; steps/run_hybrid.sh "${args[@]}" --corpus ... --lm-text ...

stage=0
stop_stage=100
config=conf/demo.yaml   # the recipe config (corpus/manifests/features/lang/... sections)
nj=2                    # parallel jobs
device=cpu              # cpu | cuda
am_systems="ce"         # one AM per system (conf/systems/<name>.yaml) and seed
ali_source=k2           # alignments behind the senone tree and the targets: k2 (lm2am's aligner,
                        # exp/ali_mono) | gmm (Kaldi's GMM-HMM monophone system, exp/mono_gmm) |
                        # am (realigned with the trained AM $realign_am, exp/ali_am: a second pass)
realign_am=exp/am_ce/seed1/final.pt   # the AM that --ali-source am realigns with (trained on exp/tree)
gmm_baseline=false      # also train Kaldi's GMM-HMM mono system: aligner comparison, GMM row in RESULTS.md
am_jobs=1               # AMs trained / decoded side by side (each with train.num_threads threads)
seeds="1"               # seeds of every system
extra_seeds=""          # more seeds for $extra_seed_systems (RESULTS.md: mean ± std over seeds)
extra_seed_systems=""
decode_scales="0.05 0.07 0.1 0.14 0.2 0.3 0.5"   # acoustic scales swept on dev; the best one decodes test
keep_loglikes=false     # keep exp/am_*/seed*/decode_*/loglikes.ark (float32 [frames, senones]) after decoding
extra_result_rows=""    # more RESULTS.md rows, "NAME=DIR ...": DIR holds decode_<part>/ (e.g. a GMM baseline)
sweep=""                # a sweep file (conf/sweeps/<name>.yaml): its variants replace --am-systems, dev only
data_sizes=""           # hours, e.g. "0.5 1": also train every system on nested subsets of the training
                        # part (exp/am_<sys>_h<hours>/), decode them, exp/data_size.md + plots/data_size.png

hybrid_last_stage=17    # stages 0-2 are the recipe's own, 3-17 the driver's

hybrid_option_names="stage stop_stage config nj device am_systems ali_source realign_am gmm_baseline am_jobs seeds
  extra_seeds extra_seed_systems decode_scales keep_loglikes extra_result_rows sweep data_sizes"

# hybrid_options_help: the help lines of these options, with their current values as defaults.
hybrid_options_help() {
  cat <<EOF
  --config FILE      recipe config with sections corpus/manifests/features/lang ($config)
  --stage N          first stage to run ($stage)
  --stop-stage N     last stage to run ($stop_stage)
  --nj N             parallel jobs ($nj)
  --device DEV       cpu or cuda for the neural stages ($device)
  --am-systems LIST  systems to train, names of conf/systems/*.yaml, or a preset: paper (the whole
                     ablation with its settings), demo (ce interp_lam0.05 hier_w0.1_T1:
                     CE and the dev picks of conf/sweeps/kd.yaml) ("$am_systems")
  --ali-source SRC   k2 | gmm | am: aligner behind the tree and targets ($ali_source); am realigns
                     with --realign-am (a second pass: run.sh --stage 8 --ali-source am)
  --realign-am FILE  the trained AM that --ali-source am aligns with ($realign_am)
  --gmm-baseline B   true | false: Kaldi GMM-HMM mono system as baseline and cross-check ($gmm_baseline)
  --am-jobs N        AM systems trained and decoded side by side ($am_jobs)
  --seeds LIST       seeds of every system ("$seeds")
  --extra-seeds LIST more seeds for the systems in --extra-seed-systems ("$extra_seeds")
  --extra-seed-systems LIST  ("$extra_seed_systems")
  --decode-scales LIST  acoustic scales swept on dev ("$decode_scales")
  --keep-loglikes BOOL  keep the AMs' log-likelihood arks after decoding ($keep_loglikes)
  --extra-result-rows LIST  NAME=DIR rows added to exp/RESULTS.md ("$extra_result_rows")
  --sweep FILE       train and decode on dev only the variants of a sweep file (written to
                     conf/systems/<variant>.yaml) instead of --am-systems; stage 17 writes
                     exp/sweep_<name>/dev_table.md and picks.txt; then decode the test parts with
                     --am-systems "ce \$(cat exp/sweep_<name>/picks.txt)" ("$sweep")
  --data-sizes LIST  hours, e.g. "0.5 1": every system of --am-systems (its seeds) also trained on
                     a fixed subset of the training part of that size (the smaller inside the larger;
                     the same utterances for every system and seed; the same teachers) into
                     exp/am_<system>_h<hours>/ and decoded; stage 17 writes exp/data_size.md and
                     exp/plots/data_size.png, the full part being the normal run ("$data_sizes")
EOF
}

# hybrid_stages_help: stages 3-17, the same in every recipe (0-2 are the recipe's own).
hybrid_stages_help() {
  cat <<'EOF'
  3  lhotse manifests (steps/make_manifests.py)
  4  lang: lexicon, phones, words, BPE (steps/prepare_lang.py)
  5  fbank features + global CMVN (steps/compute_fbank.py, steps/compute_cmvn.py); data checks
     (steps/validate_data.py)
  6  data summary: hours, utterances, speakers, OOV rate per split
  7  flat-start k2 aligner (steps/train_aligner.py); Kaldi GMM-HMM mono system (steps/train_gmm_mono.py)
  8  forced alignment of the train and eval parts (k2, GMM; with --ali-source am a realignment
     with a trained AM, steps/realign.py); accuracy vs the corpus's reference timings where it
     has them (synth-en: the synthesizers')
  9  senone decision tree (steps/build_tree.py)
  10 frame targets: senone, monophone, subword (steps/make_targets.py)
  11 decoding graph HCLG from lang + senone tree + n-gram LM of the LM text (steps/make_graph.py)
  12 teacher LMs for senones, monophones, subwords (steps/train_lm.py)
  13 teacher posteriors (top-k per frame, ark/scp) for the train and dev parts
  14 train every AM system in --am-systems for every seed (steps/train_am.py)
  15 dev frame accuracy of every system (steps/eval_am.py) -> exp/frame_accuracy_<dev>.md
  16 decode dev (acoustic-scale sweep) and every test part with the dev-best scale, for every
     system and seed (steps/decode_am.sh) -> exp/am_<sys>/seed<k>/decode_<part>/
  17 k2 vs Kaldi decoder cross-check on dev (steps/compare_decoders.sh); results table
     exp/RESULTS.md (+ aligner comparison, decoder cross-check, significance vs CE) and
     exp/plots/wer_systems.png; with --data-sizes the data-size curve (steps/data_size_report.py
     -> exp/data_size.md, exp/plots/data_size.png); with --sweep instead the sweep's dev table
     and picks (steps/sweep_table.py -> exp/sweep_<name>/)
EOF
}

# hybrid_options_args ARRAY: appends "--name value" for each of these options to the array ARRAY.
hybrid_options_args() {
  local -n _hybrid_args="$1"
  local v
  for v in $hybrid_option_names; do _hybrid_args+=("--${v//_/-}" "${!v}"); done
}

# hours_tag H: the hours of --data-sizes as exp/am_<system>_h<H> names them ("%g": 0.50 -> 0.5,
# 1.0 -> 1), the rule of lm2am.am.subset.size_tag.
hours_tag() {
  awk -v x="$1" 'BEGIN { printf "%g", x }'
}

# hybrid_options_check SELF: the numeric options make sense (stage numbers, job counts, seeds);
# otherwise one ERROR line naming the option and exit 1, before anything is written.
hybrid_options_check() {
  local self="$1" v
  _hybrid_bad() { echo "ERROR: $self: $1; run '$self --help' for the valid options" >&2; exit 1; }
  for v in stage stop_stage nj am_jobs; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || _hybrid_bad "--${v//_/-} '${!v}' is not a number (expected an integer >= 0)"
  done
  for v in nj am_jobs; do
    [ "${!v}" -ge 1 ] || _hybrid_bad "--${v//_/-} ${!v}: need at least 1 job"
  done
  [ "$stage" -le "$hybrid_last_stage" ] ||
    _hybrid_bad "--stage $stage: no such stage (the stages are 0-$hybrid_last_stage)"
  [ "$stop_stage" -ge "$stage" ] ||
    _hybrid_bad "--stop-stage $stop_stage is before --stage $stage, so nothing would run"
  for v in $seeds $extra_seeds; do
    [[ "$v" =~ ^[0-9]+$ ]] || _hybrid_bad "--seeds/--extra-seeds: '$v' is not a seed (expected integers >= 0)"
  done
  local seen=" " h
  for v in $data_sizes; do
    { [[ "$v" =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v x="$v" 'BEGIN { exit !(x > 0) }'; } ||
      _hybrid_bad "--data-sizes: '$v' is not a number of hours (expected numbers > 0, e.g. \"0.5 1\")"
    h=$(hours_tag "$v")
    [[ "$seen" != *" $h "* ]] || _hybrid_bad "--data-sizes: $h given twice"
    seen="$seen$h "
  done
  [ -z "$data_sizes" ] || [ -z "$sweep" ] ||
    _hybrid_bad "--data-sizes with --sweep: a sweep is decided on dev only; run the sizes with its picks in --am-systems"

  return 0
}
