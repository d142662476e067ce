"""Kaldi's GMM-HMM monophone system (``steps/train_mono.sh``) on lm2am's data and lang.

Kaldi's own code does the modelling, from the k2-fsa wheels: ``TransitionModel``, ``AmDiagGmm``
and ``DiagGmm`` (likelihoods, parameters), ``AccumAmDiagGmm`` + ``mle_am_diag_gmm_update``
(MLE update), ``AmDiagGmm.split_by_count`` (mix-up, its perturbation seeded here), ``TransitionModel.mle_update``,
``kaldifst.equal_align`` (flat start) and kaldi-decoder's ``FasterDecoder`` (Viterbi alignment,
as Kaldi's ``AlignUtteranceWrapper``, and decoding over an OpenFst HCLG). The glue is here:

- :mod:`~lm2am.gmm.config`: the ``gmm:`` config section (:class:`GmmConfig`);
- :mod:`~lm2am.gmm.features`: MFCC from the stored fbank (DCT + lifter), deltas, CMVN;
- :mod:`~lm2am.gmm.model`: the monophone tree, the model container and its files;
- :mod:`~lm2am.gmm.graphs`: per-utterance training graphs (Kaldi's ``compile-train-graphs`` +
  ``add_transition_probs``) and alignment read-out;
- :mod:`~lm2am.gmm.train`: flat start and EM (:func:`train_mono`);
- :mod:`~lm2am.gmm.mixup`: the mix-up with a seeded perturbation (the wheel's is unseedable);
- :mod:`~lm2am.gmm.align`: alignment of cuts into the files the k2 aligner writes;
- :mod:`~lm2am.gmm.decode`: decoding with the GMM over an HCLG built for the monophone tree.

Why not ``TrainingGraphCompiler`` / ``align_utterance_wrapper`` / ``LatticeFasterDecoder`` of
kaldi-hmm-gmm: its FST-typed functions were built against an older OpenFst than kaldifst and
reject kaldifst FSTs (see :mod:`lm2am.graph`); kaldi-decoder's decoders take kaldifst FSTs and a
``DecodableCtc`` matrix, so the GMM log-likelihoods go through that matrix.
"""
