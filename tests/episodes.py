"""Test helpers: the per-job results of each env's first finished episode in a vector env."""

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


def play_episodes(env, policy, num_envs: int, max_steps: int = 20000) -> list[pd.DataFrame]:
    """Step ``env`` (from ``reset(seed=0)``) with ``policy``'s actions until each of its
    ``num_envs`` envs has finished one episode; their per-job results, by env index."""
    results = capture_episodes(env)
    env.reset(seed=0)
    for _ in range(max_steps):
        env.step(baselines.act(policy, env))
        if len(results) == num_envs:
            break
    env.close()
    return [results[e] for e in range(num_envs)]
