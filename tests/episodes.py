"""Test helper: collect the per-job results of each env's first finished episode in a vector env."""

from __future__ import annotations

import numpy as np
import pandas as pd

import baselines


def capture_episodes(env) -> dict[int, pd.DataFrame]:
    """A dict that fills, as ``env`` is stepped, with env index -> per-job results of that env's
    first finished episode (taken just before the env's autoreset)."""
    eng = baselines.engine_of(env)
    results: dict[int, pd.DataFrame] = {}
    reset_envs = eng.reset_envs

    def capture(idx):
        for e in np.asarray(idx):
            if eng.core.n_jobs[e] > 0 and eng.core.done[e] and int(e) not in results:
                results[int(e)] = eng.episode_results(int(e))
        reset_envs(idx)

    eng.reset_envs = capture
    return results
