"""The core's resource models: CPUs and memory, GPU sharing, network links, explicit placements
and dynamically adapting jobs (each checked against an independent computation)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core import RUNNING, WAITING, AllocationError, ClusterCore
from envs.workload import Workload
from traces import clusters, models


def _workload(names, gpus, work, growth=None) -> Workload:
    k = len(gpus)
    return Workload(job_id=np.arange(k).astype(object), submit=np.zeros(k), work=np.asarray(work, dtype=float),
                    gpus=np.asarray(gpus), model=np.array([models.model_index(m) for m in names]),
                    min_gpus=np.asarray(gpus), max_gpus=np.asarray(gpus), growth=growth)


def _core(spec, names, gpus, work, **kw) -> ClusterCore:
    growth = kw.pop("growth", None)
    core = ClusterCore(spec, 1, **kw)
    core.load(np.array([0]), [_workload(names, gpus, work, growth)])
    return core


def _alloc(core, counts):
    n = np.zeros((1, core.S), dtype=np.int64)
    n[0, : len(counts)] = counts
    return n, np.zeros_like(n)


def _run(core):
    while not core.done[0]:
        core.next_event()
        core.advance()


# ------------------------------------------------------------------------------- sharing
def test_two_jobs_share_gpus_at_the_measured_pairwise_speeds():
    core = _core(clusters.homogeneous(2, 4), ["resnet18", "lm"], [2, 2], [1000.0, 1000.0])
    n, t = _alloc(core, [2, 2])
    p = np.full_like(n, -1)
    p[0, 1] = 0  # job 1 joins job 0's GPUs
    core.apply(n, t, partner=p)
    core.refresh()
    a, b = models.SHARING["resnet18"]["lm"], models.SHARING["lm"]["resnet18"]
    np.testing.assert_allclose(core.s_rate[0, :2], [a, b])
    assert core.free[0].sum() == 8 - 2  # two GPUs hold both jobs
    assert (core.s_place[0, 0] == core.s_place[0, 1]).all()
    # job 0 finishes at 1000 / a; then job 1 runs alone at full speed, and the GPUs come back
    t0 = 1000.0 / a
    t1 = t0 + (1000.0 - b * t0)
    _run(core)
    np.testing.assert_allclose(core.j_finish[0, :2], [t0, t1])
    assert core.free[0].sum() == 8


def test_invalid_sharing_is_refused_without_changing_anything():
    core = _core(clusters.homogeneous(2, 4), ["resnet18", "lm", "lm"], [2, 1, 2], [1000.0] * 3)
    n, t = _alloc(core, [2, 1, 0])
    core.apply(n, t)
    before = (core.free.copy(), core.s_status.copy(), core.s_place.copy())
    for counts, partner in (([2, 1, 0], 0), ([2, 0, 2], 2)):  # wrong GPU count; sharing with itself
        n2, t2 = _alloc(core, counts)
        p = np.full_like(n2, -1)
        p[0, 1 if partner == 0 else 2] = partner
        with pytest.raises(AllocationError, match="share"):
            core.apply(n2, t2, partner=p)
        assert (core.free == before[0]).all() and (core.s_status == before[1]).all()
        assert (core.s_place == before[2]).all()


# ------------------------------------------------------------------------------- network
def _spanning(network=True, shift=False):
    core = _core(clusters.homogeneous(4, 4), ["resnet18", "transformer"], [8, 8], [1000.0, 1000.0],
                 network=network)
    n, t = _alloc(core, [8, 8])
    place = np.zeros((1, core.S, core.N), dtype=np.int64)
    place[0, 0] = [2, 2, 2, 2]
    place[0, 1] = [2, 2, 2, 2]
    core.apply(n, t, place=place, shift=np.full_like(n, shift, dtype=bool))
    core.refresh()
    return core


def test_link_contention_slows_spanning_jobs_unless_interleaved():
    phi = models.comm_fraction_vector()
    a, b = phi[models.model_index("resnet18")], phi[models.model_index("transformer")]
    loc = models.locality_vector()
    base = np.array([loc[models.model_index("resnet18")], loc[models.model_index("transformer")]])  # spread gangs
    alone = _spanning(network=False)
    np.testing.assert_allclose(alone.s_rate[0, :2], base)
    rand = _spanning()
    slow = np.array([1 + (a + b) - a, 1 + (a + b) - b])
    own = np.array([a, b])
    np.testing.assert_allclose(rand.s_rate[0, :2], base / ((1 - own) + own * slow))
    shifted = _spanning(shift=True)  # a + b < 1: perfectly interleaved
    np.testing.assert_allclose(shifted.s_rate[0, :2], base)


def test_single_node_jobs_do_not_use_the_network():
    core = _core(clusters.homogeneous(2, 4), ["lm", "lm"], [4, 4], [100.0, 100.0], network=True)
    core.apply(*_alloc(core, [4, 4]))
    core.refresh()
    np.testing.assert_allclose(core.s_rate[0, :2], 1.0)


def test_explicit_placement_is_validated_before_any_change():
    core = _core(clusters.homogeneous(4, 4), ["lm", "lm"], [8, 4], [100.0, 100.0])
    n, t = _alloc(core, [8, 4])
    place = np.zeros((1, core.S, core.N), dtype=np.int64)
    place[0, 0] = [4, 4, 0, 0]
    place[0, 1] = [0, 4, 0, 0]  # node 1 twice
    with pytest.raises(AllocationError, match="node 1"):
        core.apply(n, t, place=place)
    assert (core.s_status[0, :2] == WAITING).all() and core.free[0].sum() == 16
    place[0, 1] = [0, 0, 0, 4]
    core.apply(n, t, place=place)
    assert (core.s_place[0, :2] == place[0, :2]).all() and (core.s_status[0, :2] == RUNNING).all()


# ------------------------------------------------------------------------------- CPUs
def test_cpu_sensitive_job_speeds_up_with_cpus_and_the_node_is_never_overdrawn():
    spec = clusters.homogeneous(1, 8, cpus=24, mem_gb=500)  # Synergy's server: 3 CPUs per GPU
    core = _core(spec, ["resnet18", "transformer"], [4, 4], [1000.0, 1000.0], resources=True)
    n, t = _alloc(core, [4, 4])
    cpus = np.full((1, core.S), np.nan)
    cpus[0, :2] = [5.0, 1.0]  # 20 + 4 CPUs: all of the node's
    core.apply(n, t, cpus=cpus)
    assert core.free_cpu[0, 0] == pytest.approx(0.0)
    knee, ideal, top = models.CPU_PROFILE["resnet18"]
    expect = 1 + (top - 1) * (5 - knee) / (ideal - knee)
    np.testing.assert_allclose(core.s_rate[0, :2], [expect, 1.0])
    # asking for more than is left grants what is left; a re-ask in place costs no restart
    cpus[0, :2] = [5.0, 9.0]
    core.apply(n, t, cpus=cpus)
    assert core.s_cpu[0, 1] == pytest.approx(1.0) and core.j_restarts[0].sum() == 0
    _run(core)
    assert core.free_cpu[0, 0] == pytest.approx(24.0) and core.free_mem[0, 0] == pytest.approx(500.0)


def test_proportional_cpus_change_nothing():
    spec = clusters.homogeneous(2, 8, cpus=24, mem_gb=500)
    names = ["resnet18", "lm", "a3c", "resnet50"]
    rates = []
    for resources in (False, True):
        core = _core(spec, names, [8, 4, 1, 2], [100.0, 200.0, 300.0, 400.0], resources=resources)
        core.apply(*_alloc(core, [8, 4, 1, 2]))
        rates.append(core.s_rate[0, :4].copy())
    np.testing.assert_allclose(rates[0], rates[1])


# ------------------------------------------------------------------------------- adaptation
def test_dynamically_adapting_job_speeds_up_and_keeps_its_duration():
    core = _core(clusters.homogeneous(1, 4), ["resnet18"], [1], [1000.0], growth=np.array([1.5]))
    core.apply(*_alloc(core, [1]))
    rates = []
    while not core.done[0]:
        rates.append(core.s_rate[0, 0])
        core.next_event()
        core.advance()
    P = core.dynamic_phases
    np.testing.assert_allclose(np.array(rates[1:]) / np.array(rates[:-1]), 1.5)
    assert len(rates) == P
    assert core.j_finish[0, 0] == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="dynamic_phases"):
        ClusterCore(clusters.homogeneous(1, 4), 1, dynamic_phases=0)


def test_gym_env_with_resource_models_runs_and_is_reproducible():
    import gymnasium as gym

    def rollout():
        env = gym.make_vec("GpuCluster-v0", num_envs=2, vectorization_mode="vector_entry_point", num_jobs=16,
                           cluster="small", dynamic_fraction=0.5, resources=True, network=True, trace_jobs=400)
        obs, _ = env.reset(seed=3)
        total = 0.0
        for _ in range(60):
            mask = np.stack(env.unwrapped.action_masks()) if hasattr(env.unwrapped, "action_masks") else None
            action = np.array([np.flatnonzero(m)[0] for m in mask]) if mask is not None else env.action_space.sample()
            obs, reward, *_ = env.step(action)
            total += float(reward.sum())
            assert np.isfinite(obs).all()
        env.close()
        return total

    assert rollout() == rollout()


def test_a_guest_splits_its_hosts_cpus_and_nothing_leaks():
    """Sharing GPUs shares their CPUs (the node's other GPUs keep theirs); CPUs freed by a job
    go to running jobs that got less than their share; at the end every CPU is back."""
    core = _core(clusters.homogeneous(1, 2, cpus=24, mem_gb=64), ["resnet18"] * 3, [1, 1, 1], [100.0, 100.0, 50.0],
                 resources=True)
    n, t = _alloc(core, [1, 1, 0])
    p = np.full_like(n, -1)
    p[0, 1] = 0
    core.apply(n, t, partner=p)
    np.testing.assert_allclose(core.s_cpu[0, :2], [6.0, 6.0])  # the host's 12 CPUs, half each
    assert core.free_cpu[0, 0] == pytest.approx(12.0)  # the other GPU's share is untouched
    n[0, 2] = 1
    core.apply(n, t, partner=p)
    assert core.s_cpu[0, 2] == pytest.approx(12.0) and core.free_cpu[0, 0] == pytest.approx(0.0)
    _run(core)
    assert core.free_cpu[0, 0] == pytest.approx(24.0) and core.free_mem[0, 0] == pytest.approx(64.0)


def test_cpus_freed_later_top_up_a_starved_job():
    core = _core(clusters.homogeneous(1, 2, cpus=24, mem_gb=500), ["resnet18", "resnet18"], [1, 1], [100.0, 1000.0],
                 resources=True)
    n, t = _alloc(core, [1, 1])
    cpus = np.full((1, core.S), np.nan)
    cpus[0, 0] = 24.0  # the first job takes every CPU of the node
    core.apply(n, t, cpus=cpus)
    assert core.s_cpu[0, 1] == 0.0 and 0 < core.s_rate[0, 1] < 0.05  # crawls, never stalls
    _run(core)
    assert np.isfinite(core.j_finish[0, 1]) and core.free_cpu[0, 0] == pytest.approx(24.0)


def test_regrants_in_place_are_sequential_and_follow_releases():
    spec = clusters.homogeneous(1, 8, cpus=24, mem_gb=500)
    core = _core(spec, ["resnet18", "resnet18"], [4, 2], [1000.0, 1000.0], resources=True)
    n, t = _alloc(core, [4, 2])
    core.apply(n, t)
    cpus = np.full((1, core.S), np.nan)
    cpus[0, :2] = 5.0  # 20 + 10 CPUs asked, 24 exist
    core.apply(n, t, cpus=cpus)
    assert core.free_cpu[0, 0] >= -1e-9 and core.s_cpu[0, :2].dot([4, 2]) == pytest.approx(24.0)
    # preempting one job frees its CPUs for the other's larger ask in the same decision
    core2 = _core(spec, ["resnet18", "resnet18"], [2, 4], [1000.0, 1000.0], resources=True)
    n, t = _alloc(core2, [2, 4])
    core2.apply(n, t)
    n[0, 1] = 0
    cpus[0, :2] = [9.0, np.nan]
    core2.apply(n, t, cpus=cpus)
    assert core2.s_cpu[0, 0] == pytest.approx(9.0) and core2.free_cpu[0, 0] == pytest.approx(24.0 - 18.0)
