"""The whole-queue view of GpuCluster-v0: visible order, serving the jobs beyond the K visible
ones, preempting at every event, and the option checks."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core import EMPTY, RUNNING, WAITING
from envs.engine import EnvConfig, VectorEngine
from envs.observation import CLUSTER_FEATURES, SLOT_FEATURES


def engine(**options) -> VectorEngine:
    opts = dict(cluster="tiny", num_jobs=64, max_slots=2, action_mode="priority", trace_jobs=3000, load=1.5)
    eng = VectorEngine(8, **{**opts, **options})
    eng.seed(list(range(8)))
    eng.reset_envs(np.arange(8))
    return eng


def fitting_waiting_jobs(eng: VectorEngine) -> int:
    """Waiting jobs that would fit the free GPUs of some type right now."""
    c = eng.core
    fits = (c.free_per_type()[:, None, :] >= c.s_gpus[:, :, None]).any(axis=2)
    return int(((c.s_status == WAITING) & fits).sum())


@pytest.mark.parametrize("order", ["arrival", "attained"])
def test_served_hidden_jobs_backfill_and_unserved_ones_wait(order: str) -> None:
    left_idle = {}
    for serve_hidden in (True, False):
        eng = engine(visible_order=order, serve_hidden=serve_hidden)
        rng = np.random.default_rng(1)
        left_idle[serve_hidden] = 0
        for _ in range(200):
            live = ~eng.core.done
            eng.serve_scores(rng.uniform(-1, 1, (8, 2)), live)
            left_idle[serve_hidden] += fitting_waiting_jobs(eng)
            eng._advance(live, np.zeros(8))
            eng.refresh()
            eng.reset_envs(np.flatnonzero(eng.core.done))
    assert left_idle[True] == 0  # the greedy allocator backfills every job, visible or not
    assert left_idle[False] > 0  # K = 2: jobs nobody can see are never started


def test_hidden_jobs_are_served_in_visible_order_after_the_visible_ones() -> None:
    eng = engine(visible_order="attained", serve_hidden=True, preemption=True)
    rng = np.random.default_rng(2)
    for _ in range(120):
        p = eng.priority(rng.uniform(-1, 1, (8, 2)), np.ones(8, dtype=bool))
        c = eng.core
        for e in range(8):
            active = np.flatnonzero(c.s_status[e] != EMPTY)
            hidden = [s for s in eng.ranked[e] if s in set(active) - set(eng.vis[e])]
            scores = p.scores[e, hidden]
            assert np.all(np.diff(scores) < 0) and np.all((scores > -2) & (scores < -1))
            assert np.all(p.scores[e, eng.vis[e][c.s_status[e, eng.vis[e]] != EMPTY]] >= -1)
            # the hidden ones follow least attained service, ties by arrival
            keys = [(c.s_attained[e, s], c.s_job[e, s]) for s in hidden]
            assert keys == sorted(keys)
        eng.step(rng.uniform(-1, 1, (8, 2)))
        eng.reset_envs(np.flatnonzero(eng.needs_reset))


def test_preempting_at_every_event_lets_running_jobs_compete_at_every_step() -> None:
    eng = engine(preemption=True, preempt_every_event=True, round_length=1e6, serve_hidden=True)
    rng = np.random.default_rng(3)
    preempted = 0
    for _ in range(150):
        p = eng.priority(rng.uniform(-1, 1, (8, 2)), ~eng.core.done)
        assert np.array_equal(np.asarray(p.preempt), ~eng.core.done)
        before, job = eng.core.s_status == RUNNING, eng.core.s_job.copy()
        eng.step(rng.uniform(-1, 1, (8, 2)))
        S = before.shape[1]
        same = eng.core.s_job[:, :S] == job
        preempted += int((before & same & (eng.core.s_status[:, :S] == WAITING)).sum())
        eng.reset_envs(np.flatnonzero(eng.needs_reset))
    assert preempted > 0  # with no round boundary in sight, only the per-event preemption can do this


def test_the_pooled_features_see_the_whole_queue() -> None:
    eng = engine(max_slots=2)
    at = eng.cluster_offsets
    for _ in range(80):
        obs, _ = eng.observe()
        waiting = (eng.core.s_status == WAITING).sum(axis=1)
        shown = (np.take_along_axis(eng.core.s_status, eng.vis, axis=1) == WAITING).sum(axis=1)
        hidden = waiting - shown
        np.testing.assert_allclose(obs[:, at["hidden"]], hidden / (hidden + 2.0), rtol=1e-6)
        assert ((obs[:, at["queue_gpus_max"]] >= obs[:, at["queue_gpus_mean"]]) | (waiting == 0)).all()
        assert (obs[:, at["queue_remaining_mean"]] == 0).all()  # durations hidden
        eng.step(np.zeros((8, 2)))
        eng.reset_envs(np.flatnonzero(eng.needs_reset))
    assert {"hidden", "queue_waited_max"} <= set(CLUSTER_FEATURES)
    assert {"gpu_remaining", "service_rank", "remaining_rank"} <= set(SLOT_FEATURES)


@pytest.mark.parametrize("options,message", [
    (dict(visible_order="lifo"), "visible_order"),
    (dict(visible_order="remaining", known_durations=False), "known_durations"),
    (dict(serve_hidden=True, action_mode="pick"), "serve_hidden"),
    (dict(preempt_every_event=True, action_mode="priority", preemption=False), "preempt_every_event"),
])
def test_bad_queue_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvConfig(**options)
