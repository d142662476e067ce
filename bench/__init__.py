"""lm2am benchmark suite (issue 8): ``.venv/bin/python bench/run_all.py [--quick]``.

One module per benchmark, each with ``run(ctx) -> List[Row]`` (:mod:`bench.common`);
:mod:`bench.run_all` runs them and writes ``bench/RESULTS.md``. ``bench/gpu_train.py`` is a
standalone GPU throughput script (imports only the AM model/losses/config).
"""
