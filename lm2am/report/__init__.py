"""Reports: the RESULTS.md table (:mod:`~lm2am.report.results` reads the rows,
:mod:`~lm2am.report.tables` writes it) and the PNG plots (:mod:`~lm2am.report.plots`, the
package's only matplotlib set-up; matplotlib itself is imported only when a plot is drawn)."""
from lm2am.report.results import (Row, RunResult, extra_row, mean_std, read_run, read_scales, read_wer,
                                  relative_change, system_row)
from lm2am.report.tables import make_results, results_markdown

__all__ = ["RunResult", "Row", "read_wer", "read_scales", "read_run", "system_row", "extra_row", "mean_std",
           "relative_change", "results_markdown", "make_results"]
