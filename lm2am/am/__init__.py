"""Hybrid acoustic model with auxiliary output layers, and every distillation variant.

Modules: :mod:`~lm2am.am.config` (typed configs, system files), :mod:`~lm2am.am.model`
(encoder, main senone output, auxiliary heads), :mod:`~lm2am.am.losses` (CE, label
interpolation, sparse top-k KD), :mod:`~lm2am.am.data` (cuts, sampler, batches),
:mod:`~lm2am.am.train` (setting a run up and driving it), :mod:`~lm2am.am.epoch` (loss,
update, one epoch, validation), :mod:`~lm2am.am.checkpoint` (resume, averaging, ``final.pt``),
:mod:`~lm2am.am.optim` (AdamW groups, LR schedules), :mod:`~lm2am.am.distributed` (DDP ranks,
devices, seeding), :mod:`~lm2am.am.priors` (senone priors), :mod:`~lm2am.am.evaluate` (frame
accuracy). Nothing here imports k2: targets and teacher posteriors are precomputed, so the
trainer runs under any torch that runs the model.
"""
