"""The env and the simulator under odd but legal input: presets with jobs larger than the cluster,
truncated episodes, non-finite or non-integer actions, tiny durations, and bad settings."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import baselines
import envs
from envs import ClusterCore, GpuClusterEnv, GpuClusterVectorEnv, make_workload, metrics, simulate
from envs.core import RUNNING, WAITING
from envs.metrics import SLOWDOWN_MIN_DURATION
from envs.workload import drop_oversize
from traces import clusters, make_trace


def jobs(rows: list[tuple[float, float, int]]) -> pd.DataFrame:
    """A trace from ``(submit, duration, gpus)`` rows, all jobs of model ``resnet50``."""
    submit, duration, gpus = (list(c) for c in zip(*rows, strict=True))
    return make_trace({"submit_time": submit, "duration": duration, "num_gpus": gpus,
                       "model": ["resnet50"] * len(rows)})


def first_legal(mask: np.ndarray) -> int:
    """Start the first startable job, else advance."""
    return int(np.flatnonzero(mask[:-1])[0]) if mask[:-1].any() else len(mask) - 1


# ---------------------------------------------------------------------- jobs larger than the cluster
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("preset", sorted(clusters.PRESETS))
def test_every_preset_resets_and_steps_with_defaults_and_any_trace_seed(preset: str, seed: int) -> None:
    env = gym.make("GpuCluster-v0", cluster=preset, trace_seed=seed)
    eng = env.unwrapped.engine
    assert eng.base.gpus.max() <= max(eng.spec.gpus_per_type().values())
    assert env.unwrapped.dropped_jobs >= 0
    _obs, info = env.reset(seed=seed)
    for _ in range(30):
        obs, reward, term, trunc, info = env.step(first_legal(info["action_mask"]))
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert info["invalid_actions"] == 0
        if term or trunc:
            break


def test_gavel_drops_and_counts_the_jobs_no_gpu_pool_can_hold() -> None:
    """The synthetic trace on gavel (3 pools of 48 GPUs, 144 in all) holds 64- and 128-GPU jobs."""
    dropped = [GpuClusterEnv(cluster="gavel", trace_seed=s).dropped_jobs for s in range(4)]
    assert sum(dropped) > 0
    vec = GpuClusterVectorEnv(2, cluster="gavel", trace_seed=2)
    assert vec.dropped_jobs == dropped[2] > 0


def test_oversize_jobs_are_dropped_the_same_way_by_simulate_the_env_and_train() -> None:
    import train

    trace = jobs([(0.0, 100.0, 1), (10.0, 50.0, 16), (20.0, 30.0, 2), (30.0, 40.0, 4)])
    kept, dropped = drop_oversize(trace, clusters.tiny())
    assert dropped == 1 and kept["num_gpus"].tolist() == [1, 2, 4]
    result = simulate(trace, "tiny", baselines.get("fifo"))
    assert result.info["dropped_jobs"] == 1
    assert result.jobs["job_id"].tolist() == kept["job_id"].tolist()
    env = GpuClusterEnv(trace=trace, num_jobs=3, load=None, cluster="tiny")
    assert env.dropped_jobs == 1
    np.testing.assert_array_equal(env.engine.base.gpus, [1, 2, 4])
    assert train.drop_oversize is drop_oversize
    with pytest.raises(ValueError, match="1 larger than its largest GPU pool dropped"):
        GpuClusterEnv(trace=trace, num_jobs=4, load=None, cluster="tiny")


def test_a_trace_with_no_job_that_fits_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="all 2 jobs request more GPUs than the largest GPU pool of cluster 'tiny' \\(8\\)"):
        simulate(jobs([(0.0, 10.0, 16), (1.0, 10.0, 9)]), "tiny", "fifo")


# ---------------------------------------------------------------------- truncated episodes
def test_utilisation_of_a_truncated_episode_matches_gpu_time_over_the_simulated_span() -> None:
    env = GpuClusterEnv(cluster="tiny", num_jobs=32, max_slots=8, trace_jobs=2000, max_steps=40)
    core = env.engine.core
    _obs, info = env.reset(seed=3)
    gpu_seconds = 0.0
    trunc = term = False
    while not (term or trunc):
        action = first_legal(info["action_mask"])
        held = float(core.s_n[0][core.s_status[0] == RUNNING].sum())
        before = float(core.clock[0])
        _obs, _r, term, trunc, info = env.step(action)
        if action == env.engine.K:  # time moves only on an advance, with the allocation held before it
            gpu_seconds += held * (float(core.clock[0]) - before)
    assert trunc and not term
    m = info["episode_metrics"]
    assert 0 < m["unfinished"] < 32 and (core.s_status[0] == RUNNING).any()
    expected = gpu_seconds / (core.total_gpus * float(core.clock[0]))  # the window starts at 0
    assert m["utilization"] == pytest.approx(expected, rel=1e-9)
    assert m["utilization"] <= 1.0


# ---------------------------------------------------------------------- actions
def present_positions(env) -> np.ndarray:
    eng = env.engine
    return np.flatnonzero(np.take_along_axis(eng.core.s_status, eng.visible, axis=1)[0] != 0)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_priority_action_with_one_non_finite_score_is_counted_invalid(bad: float) -> None:
    env = GpuClusterEnv(cluster="tiny", num_jobs=16, max_slots=8, trace_jobs=500, action_mode="priority")
    env.reset(seed=0)
    K = env.engine.K
    _o, _r, _te, _tr, info = env.step(np.zeros(K, dtype=np.float32))
    assert info["invalid_actions"] == 0
    action = np.zeros(K, dtype=np.float32)
    action[present_positions(env)[0]] = bad
    _o, _r, _te, _tr, info = env.step(action)
    assert info["invalid_actions"] == 1
    empty = np.setdiff1d(np.arange(K), present_positions(env))
    assert len(empty)
    action = np.zeros(K, dtype=np.float32)
    action[empty] = bad  # scores of empty slots leave no job out
    _o, _r, _te, _tr, info = env.step(action)
    assert info["invalid_actions"] == 1


def test_non_integer_pick_action_is_invalid_not_rounded() -> None:
    trace = jobs([(0.0, 100.0, 1), (0.0, 100.0, 1), (0.0, 100.0, 1)])
    env = GpuClusterEnv(trace=trace, num_jobs=3, load=None, cluster="tiny", max_slots=4)
    _obs, info = env.reset(seed=0)
    assert info["action_mask"][:3].all()
    _obs, _r, _te, _tr, info = env.step(1.7)
    assert info["invalid_actions"] == 1
    core = env.engine.core
    status = {int(j): int(s) for j, s in zip(core.s_job[0], core.s_status[0], strict=True) if s}
    assert status[1] == WAITING  # not started as if the action were 1
    _obs, _r, _te, _tr, info = env.step(np.float64(1.0))  # an integral float is a slot
    assert info["invalid_actions"] == 1
    vec = GpuClusterVectorEnv(2, trace=trace, num_jobs=3, load=None, cluster="tiny", max_slots=4)
    vec.reset(seed=0)
    _o, _r, _te, _tr, infos = vec.step(np.array([1.7, 1.0]))
    np.testing.assert_array_equal(infos["invalid_actions"], [1, 0])


# ---------------------------------------------------------------------- tiny durations
def test_slowdown_rate_is_finite_for_tiny_positive_work() -> None:
    """The core takes any positive work (e.g. 5e-324 s); its slowdown integrand is floored."""
    spec = clusters.tiny()
    base = make_workload(jobs([(0.0, 1.0, 1), (0.0, 1.0, 2), (0.0, 100.0, 1)]), spec)
    work = np.array([5e-324, 1e-300, 100.0])
    core = ClusterCore(spec, 1)
    core.load(np.array([0]), [dataclasses.replace(base, work=work)])
    core.serve(np.array([[3.0, 2.0, 1.0] + [-np.inf] * (core.S - 3)]))
    while not core.done[0]:
        stats = core.advance()
        assert np.isfinite(stats.slowdown_time).all()
    res = metrics.from_core(core, 0)
    assert np.isfinite(res["slowdown"]).all()
    np.testing.assert_allclose(res["slowdown"], res["jct"] / np.maximum(work, SLOWDOWN_MIN_DURATION))


def test_slowdown_return_is_minus_total_floored_slowdown() -> None:
    trace = jobs([(0.0, 0.25, 1), (0.0, 0.5, 2), (5.0, 3.0, 8), (6.0, 100.0, 4)])
    env = GpuClusterEnv(trace=trace, num_jobs=4, load=None, cluster="tiny", reward="slowdown", max_slots=4)
    _obs, info = env.reset(seed=0)
    total = 0.0
    for _ in range(100):
        _obs, r, term, trunc, info = env.step(first_legal(info["action_mask"]))
        assert np.isfinite(r)
        total += r
        if term or trunc:
            break
    assert term
    res = env.episode_results()
    expected = res["jct"].to_numpy() / np.maximum(res["duration"].to_numpy(), SLOWDOWN_MIN_DURATION)
    assert (res["duration"] < SLOWDOWN_MIN_DURATION).sum() == 2
    np.testing.assert_allclose(res["slowdown"], expected)
    assert total == pytest.approx(-expected.sum(), rel=1e-9)


# ---------------------------------------------------------------------- settings
@pytest.mark.parametrize(("option", "value"), [
    ("num_jobs", 10.5), ("num_jobs", True), ("max_slots", 2.5), ("trace_jobs", -10), ("trace_jobs", 10.0),
    ("trace_seed", -1), ("trace_seed", 0.5), ("max_steps", 0), ("max_steps", 7.5),
])
def test_non_integer_or_negative_counts_are_rejected_at_construction(option: str, value) -> None:
    with pytest.raises(ValueError, match=f"{option} must be an integer >= [01], got {value!r}"):
        gym.make("GpuCluster-v0", **{option: value})


def test_numpy_integer_counts_are_accepted() -> None:
    cfg = envs.EnvConfig(num_jobs=np.int64(16), max_slots=np.int32(8), trace_jobs=np.int64(500), trace_seed=np.int64(1))
    assert (cfg.num_jobs, cfg.max_slots, cfg.trace_jobs, cfg.trace_seed) == (16, 8, 500, 1)
    assert type(cfg.num_jobs) is int


def test_simulate_takes_cluster_and_baseline_names() -> None:
    trace = jobs([(0.0, 100.0, 1), (5.0, 50.0, 4), (6.0, 30.0, 8), (9.0, 10.0, 2)])
    by_name = simulate(trace, "tiny", "fifo")
    by_object = simulate(trace, clusters.tiny(), baselines.get("fifo"))
    pd.testing.assert_frame_equal(by_name.jobs, by_object.jobs)
    assert by_name.info["policy"] == "fifo"
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        simulate(trace, "tiny", "nope")


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_simulate_rejects_a_bad_seed_clearly(seed) -> None:
    with pytest.raises(ValueError, match=f"seed must be an integer >= 0, got {seed!r}"):
        simulate(jobs([(0.0, 10.0, 1)]), "tiny", "fifo", seed=seed)


@pytest.mark.parametrize(("cpus", "mem", "column"), [(-8, 64, "cpus"), (8, -1, "mem_gb"), (8, float("nan"), "mem_gb")])
def test_negative_node_cpus_or_memory_are_rejected(cpus, mem, column: str) -> None:
    with pytest.raises(ValueError, match=f"cluster 'bad', node 0, column '{column}': expected a finite number >= 0"):
        clusters.from_counts("bad", [("v100", 2, 4, cpus, mem)])
