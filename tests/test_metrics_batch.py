"""The batched episode summary (:func:`envs.metrics.summarize_core_many`) equals the one-env
summary bit for bit, for finished and truncated episodes of several lengths."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers GpuCluster-v0)
from envs import metrics
from envs.engine import VectorEngine


def _stepped_engine(num_jobs: int, max_steps: int | None, seed: int) -> VectorEngine:
    env = gym.make_vec("GpuCluster-v0", num_envs=24, cluster="tiny", num_jobs=num_jobs, max_slots=8,
                       max_steps=max_steps)
    env.reset(seed=seed)
    return env.unwrapped.engine if hasattr(env.unwrapped, "engine") else env.engine


@pytest.mark.parametrize(("num_jobs", "max_steps"), [(16, None), (40, 30)])
@pytest.mark.parametrize("seed", [0, 1])
def test_batched_summaries_equal_one_env_summaries(num_jobs: int, max_steps: int | None, seed: int) -> None:
    eng = _stepped_engine(num_jobs, max_steps, seed)
    rng = np.random.default_rng(seed)
    checked = finished = truncated = together = 0
    for _ in range(400):
        mask = eng.action_masks()
        actions = (rng.random(mask.shape) * mask).argmax(axis=1)
        _r, term, trunc, _invalid, _live = eng.step(actions)
        done = term | trunc
        if done.any():
            idx = np.flatnonzero(done)
            many = eng.episode_metrics_many(idx)
            for e, m in zip(idx.tolist(), many, strict=True):
                one = metrics.summarize_core(eng.core, e)
                assert list(m)[: len(one)] == list(one)
                np.testing.assert_equal({k: m[k] for k in one}, one)  # exact, NaN equal to NaN
                assert m["steps"] == eng.steps[e] and m["return"] == eng.ep_return[e]
            checked += len(idx)
            finished += int(term.sum())
            truncated += int((trunc & ~term).sum())
            together += int(term.sum() >= 2)
            eng.reset_envs(idx)
            eng.refresh()
    if max_steps is None:
        assert together >= 2  # episodes ended together: the batched path ran
    else:
        assert truncated >= 4
    assert checked == finished + truncated


def test_an_env_with_unfinished_jobs_is_summarised_alone() -> None:
    eng = _stepped_engine(16, None, 0)
    idx = np.arange(eng.E)
    many = eng.episode_metrics_many(idx)  # nothing has run: every job unfinished
    for e, m in zip(idx.tolist(), many, strict=True):
        np.testing.assert_equal({k: m[k] for k in ("jobs", "unfinished")},
                                {"jobs": float(eng.core.n_jobs[e]), "unfinished": float(eng.core.n_jobs[e])})
