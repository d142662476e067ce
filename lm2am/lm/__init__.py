"""Teacher LMs for the three units and their frame posteriors (issue 4).

* :mod:`lm2am.lm.tokens` token sequences from text (and from frame targets) for each unit
* :mod:`lm2am.lm.model` the ``lm:`` config section (:class:`LmConfig`) and the transformer LM
* :mod:`lm2am.lm.train` :func:`train_lm`: training, checkpoints/resume, dev (pseudo-)perplexity
  vs a unigram model
* :mod:`lm2am.lm.posteriors` batched masked-LM scoring, top-k teacher posteriors per frame as
  Kaldi ark/scp, sharded and resumable; the storage / k report
* :mod:`lm2am.lm.loader` reading posteriors back per batch (:func:`load_teacher_posteriors`)
* :mod:`lm2am.lm.plots_lm` heatmap of one utterance's teacher posteriors

Imports are lazy so ``import lm2am.lm`` stays cheap (torch is loaded by the modules that need it).
"""
