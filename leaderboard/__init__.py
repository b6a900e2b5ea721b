"""The leaderboard: every policy on the same trace windows and seeds; table, CSV and plots.

A **suite** (``leaderboard/suites/<name>.toml``, see :mod:`leaderboard.suite`) names a trace, its
windows, loads, seeds, a cluster and the policies; it expands into **cells** (policy x window x
load x seed), each run through :func:`envs.simulate` in parallel processes and cached in its own
file keyed by the hash of its full definition, so an interrupted run resumes and a rerun computes
only what is missing (:mod:`leaderboard.runner`). The outputs (:mod:`leaderboard.report`) are a
Markdown table (mean and 95% CI across windows and seeds, absolute and normalised to FIFO), a CSV
of every cell, every job's results, and plots; the same suite and seeds give byte-identical files.

    python -m leaderboard list
    python -m leaderboard run SUITE [--policies P ...] [--agent PATH ...] [--out DIR] [--jobs N]
                                    [--workers N] [--fresh]
    python -m leaderboard reproduce [--scale small|full] [--rows NAME ...] [--agent DIR]

``reproduce`` (:mod:`leaderboard.reproduce`) reruns every paper's headline comparison in its own
setting and writes ``REPRODUCTION.md`` and ``reproduction.csv``.

From Python: ``leaderboard.run(leaderboard.load_suite("synthetic"), workers=2)``.
"""

from leaderboard.runner import RunSummary, run
from leaderboard.suite import MissingDataError, Suite, SuiteError, load_suite, suite_names

__all__ = ["MissingDataError", "RunSummary", "Suite", "SuiteError", "load_suite", "run", "suite_names"]
