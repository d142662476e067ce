"""Manifests, features and CMVN: the data stages every recipe shares.

Artifacts (``<manifest-dir>`` is usually ``data/manifests``, ``<fbank-dir>`` ``data/fbank``):

- ``<manifest-dir>/{recordings,supervisions,cuts}_<part>.jsonl.gz``: lhotse manifests, validated.
- ``<fbank-dir>/cuts_<part>.jsonl.gz`` + ``<fbank-dir>/feats_<part>/``: cuts with 80-dim fbank
  stored with lilcom.
- ``<fbank-dir>/global_cmvn.ark``: Kaldi-format global CMVN stats (a 2 x (D+1) matrix: row 0
  the sums and frame count, row 1 the sums of squares), computed on the training part.

Every corpus reaches the manifests through one of two doors: a LibriSpeech-layout directory
(:func:`prepare_manifests`, used by synth-en, the Asterisk set and LibriSpeech) or a Kaldi data
directory (:mod:`lm2am.corpus.kaldi_dir`), and both end in :func:`save_manifests`.

Modules: :mod:`.manifests` (lhotse manifests, checked file by file), :mod:`.features` (fbank and
global CMVN), :mod:`.summary` (the corpus table), :mod:`.validate` (checks at stage boundaries,
like Kaldi's ``utils/validate_data_dir.sh``).
"""
from lm2am.data.features import (FbankConfig, check_cut_audio, check_feature_frames, cmvn_from_stats,
                                 compute_fbank, compute_fbank_lazy, compute_global_cmvn,
                                 fbank_extractor, load_features, load_global_cmvn,
                                 speaker_means)
from lm2am.data.manifests import (ManifestConfig, manifest_paths, prepare_manifests,
                                  prepare_manifests_lazy, save_manifests)
from lm2am.data.summary import corpus_summary
from lm2am.data.validate import PartReport, validate_part

__all__ = ["FbankConfig", "ManifestConfig", "PartReport", "check_cut_audio", "check_feature_frames",
           "cmvn_from_stats", "compute_fbank", "compute_fbank_lazy", "compute_global_cmvn", "corpus_summary",
           "fbank_extractor", "load_features", "load_global_cmvn", "speaker_means", "manifest_paths", "prepare_manifests",
           "prepare_manifests_lazy", "save_manifests", "validate_part"]
