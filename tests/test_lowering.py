"""The greedy gang allocator (:func:`envs.lowering.serve_in_order`) against a plain reference that
serves one job at a time, one env at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import ClusterCore, ClusterView, lowering, make_workload
from envs.core import EMPTY, RUNNING, WAITING
from envs.lowering import allocation, fastest_with_room, serve_in_order
from traces import clusters, make_trace, models


def reference(scores, cand, size, cap, job, prefer, allowed, keep, backfill):
    """Serve each env's candidates by (score descending, job ascending): a job takes the type it
    keeps if that has room, else the allowed type with room it prefers most (lowest on ties)."""
    E, S = cand.shape
    T = cap.shape[1]
    n = np.zeros((E, S), dtype=np.int64)
    t = np.full((E, S), -1, dtype=np.int64)
    cap = cap.copy()
    served = []
    for e in range(E):
        seq = []
        for s in sorted(np.flatnonzero(cand[e]), key=lambda s: (-scores[e, s], job[e, s])):
            room = [cap[e, k] >= size[e, s] and (allowed is None or allowed[e, s, k]) for k in range(T)]
            if not any(room):
                if backfill:
                    continue
                break
            if keep is not None and keep[e, s] >= 0 and room[keep[e, s]]:
                k = int(keep[e, s])
            elif prefer is None:
                k = room.index(True)
            else:
                k = max((k for k in range(T) if room[k]), key=lambda k: (prefer[e, s, k], -k))
            cap[e, k] -= size[e, s]
            n[e, s], t[e, s] = size[e, s], k
            seq.append(int(s))
        served.append(seq)
    return n, t, cap, served


def random_case(rng, T):
    E, S = int(rng.integers(1, 5)), int(rng.integers(1, 12))
    cand = rng.random((E, S)) < 0.7
    scores = rng.integers(0, 4, (E, S)).astype(np.float64)  # ties are common
    size = rng.integers(1, 5, (E, S))
    cap = rng.integers(0, 9, (E, T))
    job = np.stack([rng.permutation(S) for _ in range(E)])
    prefer = rng.integers(0, 3, (E, S, T)).astype(np.float64) if rng.random() < 0.8 else None
    allowed = rng.random((E, S, T)) < 0.7 if rng.random() < 0.3 else None
    keep = np.where(rng.random((E, S)) < 0.4, rng.integers(0, T, (E, S)), -1) if rng.random() < 0.6 else None
    return scores, cand, size, cap, job, prefer, allowed, keep


@pytest.mark.parametrize("prefix_passes", [2, 10**9])  # prefix sums on one type where they apply, or never
@pytest.mark.parametrize("backfill", [True, False])
def test_serve_in_order_matches_one_job_at_a_time(monkeypatch, backfill, prefix_passes):
    monkeypatch.setattr(lowering, "PREFIX_PASSES", prefix_passes)
    rng = np.random.default_rng(12)
    for _ in range(300):
        T = int(rng.integers(1, 4))
        scores, cand, size, cap, job, prefer, allowed, keep = random_case(rng, T)
        passes: list = []
        n, t, left = serve_in_order(scores, cand, size, cap, job, prefer, allowed=allowed, keep=keep,
                                    backfill=backfill, each=lambda *chosen, log=passes: log.append(chosen))
        n_ref, t_ref, left_ref, served = reference(scores, cand, size, cap, job, prefer, allowed, keep, backfill)
        np.testing.assert_array_equal(n, n_ref)
        np.testing.assert_array_equal(t, t_ref)
        np.testing.assert_array_equal(left, left_ref)
        # the hook sees every env's jobs in serving order, one per env and pass, envs ascending
        got = [[] for _ in served]
        for e, s, k, r in passes:
            assert (np.diff(e) > 0).all()
            np.testing.assert_array_equal(k, t_ref[e, s])
            np.testing.assert_array_equal(r, n_ref[e, s])
            for ee, ss in zip(e, s, strict=True):
                got[ee].append(int(ss))
        assert got == served


def test_fastest_with_room_keeps_a_type_only_with_room():
    room = np.array([[True, True, False], [False, True, True], [False, False, True]])
    speed = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(fastest_with_room(room, speed), [1, 1, 2])  # ties to the lower type
    np.testing.assert_array_equal(fastest_with_room(room, speed, np.array([0, 0, -1])), [0, 1, 2])
    np.testing.assert_array_equal(fastest_with_room(room), [0, 1, 2])


def mixed_core(seed: int, E: int = 3) -> ClusterCore:
    """A core on several GPU types in a random mid-run state (some jobs running on each type)."""
    rng = np.random.default_rng(seed)
    spec = clusters.get("gavel")
    core = ClusterCore(spec, E, round_length=300.0)
    loads = []
    for _ in range(E):
        rows = [(float(i), float(rng.integers(100, 5000)), int(rng.choice([1, 1, 2, 4, 8, 16])),
                 str(rng.choice(models.MODELS))) for i in range(int(rng.integers(30, 80)))]
        table = pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"])
        loads.append(make_workload(make_trace(table), spec))
    core.load(np.arange(E), loads)
    for _ in range(int(rng.integers(5, 40))):
        core.serve(rng.random((E, core.S)), preempt=False)
        core.advance()
    return core


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("backfill", [True, False])
@pytest.mark.parametrize("preempt", [True, False])
def test_core_greedy_matches_one_job_at_a_time(seed, backfill, preempt):
    """The core's greedy on several GPU types: running jobs served again keep their type, others
    go to the fastest type for their model with room; the view's :func:`allocation` agrees."""
    core = mixed_core(seed)
    rng = np.random.default_rng(seed + 50)
    scores = np.round(rng.random((core.E, core.S)) * 5)  # ties on purpose
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    run = core.s_status == RUNNING
    assert run.any() and (core.s_status == WAITING).any()
    cand = (core.s_status != EMPTY if preempt else core.s_status == WAITING) & (scores > -np.inf)
    cap = np.tile(core.capacity, (core.E, 1)) if preempt else core.free_per_type()
    keep = np.where(run, core.s_t, -1) if preempt else None
    n_ref, t_ref, _, _ = reference(scores, cand, core.s_gpus, cap, core.s_job, core.speed[core.s_model], None,
                                   keep, backfill)
    n, t = core.greedy(scores, backfill=backfill, preempt=preempt)
    served = t_ref >= 0
    base_n = np.where(run & ~preempt, core.s_n, 0)
    np.testing.assert_array_equal(n, np.where(served, n_ref, base_n))
    np.testing.assert_array_equal(t, np.where(served, t_ref, core.s_t))
    n_v, t_v = allocation(ClusterView(core), scores, backfill=backfill, preempt=preempt)
    np.testing.assert_array_equal(n_v, n)
    np.testing.assert_array_equal(t_v, t)
