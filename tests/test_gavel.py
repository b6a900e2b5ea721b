"""Gavel (baselines.gavel): its linear programs, its round mechanism, and its headline claim.

Claim: heterogeneity-aware LAS (max-min fairness over throughput normalised per job) beats its
heterogeneity-agnostic twin (equal GPU-time shares) in average JCT on a mixed-GPU cluster
(Gavel reports up to 3.5x on its objectives; a run of Gavel's own simulator gave 1.34x). The
workload follows Gavel's generator (``scheduler/utils.py``: GPU counts 1/2/4/8 with 70/10/15/5%,
durations on a V100 10^U(1.5, 3) minutes for 80% of the jobs and 10^U(3, 4) for 20%, models
uniform) on a V100/P100/K80 cluster of 8 GPUs per type. Measured on seed 0 (60 jobs, 2 per hour):
avg JCT 25.4 h heterogeneity-aware vs 32.0 h agnostic, 1.26x (seeds 0-4: 1.26x to 1.59x).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from episodes import capture_episodes

import baselines
import envs  # noqa: F401 (registers GpuCluster-v0)
from baselines.gavel import (
    Gavel,
    ftf_allocation,
    ftf_rho,
    isolated_allocation,
    las_allocation,
    makespan_allocation,
    max_min,
)
from envs import simulate
from traces import clusters, make_trace, synthetic
from traces.models import MODELS, MULTI_GPU_MODELS

MIX = clusters.from_counts("v100-p100-k80", [("v100", 2, 4, 32, 244), ("p100", 2, 4, 32, 244), ("k80", 2, 4, 32, 244)])


def gavel_workload(num_jobs: int, jobs_per_hour: float, seed: int, *, batch: bool = False,
                   long_fraction: float = 0.2) -> pd.DataFrame:
    """Jobs drawn as Gavel's generator draws them (see the module docstring); Poisson arrivals,
    or all at t=0 with ``batch``."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(3600.0 / jobs_per_hour, num_jobs)
    submit = 0.0 if batch else np.cumsum(gaps) - gaps[0]
    gpus = rng.choice([1, 2, 4, 8], size=num_jobs, p=[0.7, 0.1, 0.15, 0.05])
    long = rng.random(num_jobs) < long_fraction
    minutes = np.where(long, 10 ** rng.uniform(3, 4, num_jobs), 10 ** rng.uniform(1.5, 3, num_jobs))
    model = np.where(gpus > 1, rng.choice(MULTI_GPU_MODELS, num_jobs), rng.choice(MODELS, num_jobs))
    return make_trace(pd.DataFrame({"submit_time": submit, "duration": minutes * 60.0, "num_gpus": gpus,
                                    "model": model}))


_CACHE: dict = {}


def replay(name: str, seed: int = 0, **knobs) -> dict[str, float]:
    """Metrics of ``name`` on the Gavel-style workload of ``seed`` on :data:`MIX` (cached)."""
    key = (name, seed, tuple(sorted(knobs.items())))
    if key not in _CACHE:
        _CACHE[key] = simulate(gavel_workload(60, 2.0, seed), MIX, baselines.get(name, **knobs)).metrics
    return _CACHE[key]


def random_feasible(rng, feasible: np.ndarray, scale: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """A random allocation satisfying Gavel's constraints."""
    x = np.where(feasible, rng.random(feasible.shape) ** 3, 0.0)
    x /= np.maximum(x.sum(axis=1, keepdims=True), 1.0)
    use = scale @ x
    return x * min(1.0, float((capacity / np.maximum(use, 1e-12)).min()))


def assert_feasible(x: np.ndarray, feasible: np.ndarray, scale: np.ndarray, capacity: np.ndarray) -> None:
    assert (x >= -1e-9).all() and (x <= 1 + 1e-9).all()
    assert (x.sum(axis=1) <= 1 + 1e-6).all()
    assert (scale @ x <= capacity + 1e-6).all()
    assert (x[~feasible] == 0).all()


def instance(seed: int, M: int):
    rng = np.random.default_rng(seed)
    capacity = np.array([8.0, 8.0, 8.0])
    scale = rng.choice([1.0, 2.0, 4.0, 8.0], size=M, p=[0.7, 0.1, 0.15, 0.05])
    thr = rng.uniform(0.1, 1.5, (M, 3))
    thr[rng.random((M, 3)) < 0.1] = 0.0  # some jobs cannot use some types
    thr[:, 0] = np.maximum(thr[:, 0], 0.05)  # but every job can use one
    return rng, thr, scale, capacity


# ---------------------------------------------------------------------------------- programs
@pytest.mark.parametrize(("seed", "M"), [(0, 3), (1, 12), (2, 40)])
def test_las_lp_is_feasible_and_beats_proportional_and_random_allocations(seed, M):
    rng, thr, scale, capacity = instance(seed, M)
    feasible = thr > 0
    x, z = las_allocation(thr, scale, capacity)
    assert_feasible(x, feasible, scale, capacity)
    # the objective, computed independently: min_m s_m thr(m, X) / thr(m, X_prop)
    x_prop = np.where(feasible, capacity / capacity.sum(), 0.0)
    thr_prop = (thr * x_prop).sum(axis=1)

    def objective(a):
        return float((scale * (thr * a).sum(axis=1) / thr_prop).min())

    assert objective(x) == pytest.approx(z, rel=1e-5)
    assert objective(x) >= objective(x_prop / max(1.0, (scale @ x_prop / capacity).max())) - 1e-9
    for _ in range(200):
        assert objective(random_feasible(rng, feasible, scale, capacity)) <= z * (1 + 1e-6)


def test_second_stage_keeps_the_minimum_and_uses_the_slack():
    """Among the max-min optima, the returned X has the largest total normalised throughput."""
    _, thr, scale, capacity = instance(3, 12)
    x1, z1 = las_allocation(thr, scale, capacity, efficient=False)
    x2, z2 = las_allocation(thr, scale, capacity)
    assert z2 == pytest.approx(z1, rel=1e-6)
    thr_prop = (thr * np.where(thr > 0, capacity / capacity.sum(), 0.0)).sum(axis=1)
    total = lambda a: float((scale * (thr * a).sum(axis=1) / thr_prop).sum())  # noqa: E731
    assert total(x2) >= total(x1) - 1e-6


def test_agnostic_las_gives_equal_gpu_time_shares_when_oversubscribed():
    rng = np.random.default_rng(4)
    M = 40
    scale = rng.choice([1.0, 2.0, 4.0], size=M)
    capacity = np.array([8.0, 8.0, 8.0])
    x, z = las_allocation(np.ones((M, 3)), scale, capacity)
    gpu_time = scale * x.sum(axis=1)  # GPU-seconds per second each job gets
    np.testing.assert_allclose(gpu_time, capacity.sum() / M, rtol=1e-5)
    assert z == pytest.approx(capacity.sum() / M)


def test_heterogeneity_aware_las_puts_each_job_on_its_relatively_faster_type():
    """Recommendation runs faster on a K80 than on a V100 (Gavel's measurements); CycleGAN runs
    ~9x slower there. One GPU of each: each job gets the type it is relatively best on."""
    thr = np.array([[1.0, 1.308], [1.0, 0.114]])  # (recommendation, cyclegan) x (v100, k80)
    x, _ = las_allocation(thr, np.ones(2), np.array([1.0, 1.0]))
    np.testing.assert_allclose(x, [[0.0, 1.0], [1.0, 0.0]], atol=1e-7)


def test_makespan_lp_matches_the_hand_solution():
    """One GPU, two jobs with 100 and 300 s of work: shares 1/4 and 3/4 finish both at 400 s."""
    x, makespan = makespan_allocation(np.ones((2, 1)), np.ones(2), np.array([1.0]), np.array([100.0, 300.0]))
    np.testing.assert_allclose(x, [[0.25], [0.75]], atol=1e-7)
    assert makespan == pytest.approx(400.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_makespan_and_ftf_programs_beat_other_feasible_allocations(seed):
    rng, thr, scale, capacity = instance(seed + 10, 15)
    feasible = thr > 0
    remaining = rng.uniform(1e3, 1e5, len(scale))
    elapsed = rng.uniform(0, 2e4, len(scale))
    iso_time = elapsed * rng.uniform(0.2, 1.0, len(scale))
    x_mk, makespan = makespan_allocation(thr, scale, capacity, remaining)
    x_ftf, rho = ftf_allocation(thr, scale, capacity, remaining, elapsed, iso_time)
    for x in (x_mk, x_ftf):
        assert_feasible(x, feasible, scale, capacity)
    makespan_of = lambda a: float((remaining / (thr * a).sum(axis=1)).max())  # noqa: E731
    thr_iso = (thr * isolated_allocation(feasible, scale, capacity)).sum(axis=1)
    denominator = iso_time + remaining / thr_iso
    rho_of = lambda a: float(ftf_rho((thr * a).sum(axis=1), remaining, elapsed, denominator).max())  # noqa: E731
    assert makespan_of(x_mk) == pytest.approx(makespan, rel=1e-5)
    assert rho_of(x_ftf) == pytest.approx(rho, rel=1e-6)
    others = [random_feasible(rng, feasible, scale, capacity) for _ in range(200)]
    others += [isolated_allocation(feasible, scale, capacity), las_allocation(thr, scale, capacity)[0]]
    for x in others:
        assert makespan_of(x) >= makespan * (1 - 1e-6)
        assert rho_of(x) >= rho / (1 + 0.011)  # the bisection stops within 1%


def test_max_min_of_an_empty_or_impossible_program():
    x, z = max_min(np.zeros((0, 2)), np.zeros(0), np.array([1.0, 1.0]))
    assert x.shape == (0, 2)
    x, z = max_min(np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones(2), np.array([1.0, 1.0]))
    assert z == 0.0 and (x == 0).all()


# ---------------------------------------------------------------------------------- simulation
def test_heterogeneity_aware_las_beats_its_agnostic_twin_on_a_mixed_cluster():
    aware = replay("gavel")
    agnostic = replay("gavel_agnostic")
    ratio = agnostic["avg_jct"] / aware["avg_jct"]
    print(f"\ngavel avg JCT {aware['avg_jct'] / 3600:.1f} h, agnostic {agnostic['avg_jct'] / 3600:.1f} h: {ratio:.2f}x")
    assert aware["unfinished"] == agnostic["unfinished"] == 0
    assert ratio >= 1.15, (aware["avg_jct"], agnostic["avg_jct"])
    assert aware["makespan"] < agnostic["makespan"]


def test_finish_time_fairness_objective_lowers_max_rho():
    las = replay("gavel")
    ftf = replay("gavel_ftf")
    assert ftf["max_rho"] < las["max_rho"], (ftf["max_rho"], las["max_rho"])


def test_makespan_objective_shortens_the_makespan_of_a_batch():
    """All jobs at t=0 (Gavel's makespan experiments use a static batch)."""
    trace = gavel_workload(40, 1.0, seed=0, batch=True, long_fraction=0.0)
    las = simulate(trace, MIX, baselines.get("gavel")).metrics
    mk = simulate(trace, MIX, baselines.get("gavel_makespan")).metrics
    assert mk["makespan"] < 0.95 * las["makespan"], (mk["makespan"], las["makespan"])


def test_jobs_move_to_their_best_type_at_the_first_round_and_stay():
    """Job 0 (recommendation) and job 1 (CycleGAN) arrive at t=0 on one V100 + one K80. Between
    rounds free GPUs are filled in type order, fastest first: job 0 on the V100, job 1 on the K80.
    At the first round (360 s) the LP swaps them (each pays the 30 s restart once); nothing moves
    after that."""
    two = clusters.from_counts("v100+k80", [("v100", 1, 1, 8, 64), ("k80", 1, 1, 8, 64)])
    trace = make_trace(pd.DataFrame({"submit_time": [0.0, 0.0], "duration": [3600.0, 3600.0], "num_gpus": [1, 1],
                                     "model": ["recommendation", "cyclegan"]}))
    jobs = simulate(trace, two, baselines.get("gavel")).jobs
    assert jobs["finish"][0] == pytest.approx(390 + (3600 - 360) / 1.308)
    assert jobs["finish"][1] == pytest.approx(390 + (3600 - 0.114 * 360) / 1.0)
    assert list(jobs["restarts"]) == [1, 1] and list(jobs["preemptions"]) == [0, 0]
    agnostic = simulate(trace, two, baselines.get("gavel_agnostic")).jobs
    assert agnostic["jct"].mean() >= jobs["jct"].mean() - 1e-6


def test_rounds_realise_equal_shares_on_one_gpu():
    """Three equal jobs on one GPU: X = 1/3 each, and the round mechanism rotates them so that
    they finish within a round or two of each other (time-sharing, unlike FIFO)."""
    trace = make_trace(pd.DataFrame({"submit_time": [0.0, 0.0, 0.0], "duration": [20000.0] * 3, "num_gpus": [1] * 3,
                                     "model": ["resnet50"] * 3}))
    jobs = simulate(trace, clusters.homogeneous(1, 1, name="one-gpu"), baselines.get("gavel")).jobs
    assert jobs["finish"].max() - jobs["finish"].min() <= 2 * 360 + 60
    assert (jobs["preemptions"] > 10).all()
    assert jobs["first_start"].max() <= 2 * 360  # everyone gets a turn within the first rounds


def test_work_conserving_knob():
    """Without it, jobs that arrive mid-round wait for the next round boundary."""
    trace = make_trace(pd.DataFrame({"submit_time": [10.0], "duration": [600.0], "num_gpus": [1], "model": ["lm"]}),
                       rebase=False)
    one = clusters.homogeneous(1, 1, name="one-gpu")
    assert simulate(trace, one, baselines.get("gavel")).jobs["first_start"][0] == 10.0
    assert simulate(trace, one, baselines.get("gavel", work_conserving=False)).jobs["first_start"][0] == 360.0


# ---------------------------------------------------------------------------------- Gym env
def run_vector(trace, name: str, mode: str, cluster, *, num_envs: int = 2) -> list[pd.DataFrame]:
    """Per-job results of the first episode of each env of a vector env driven by ``name``,
    checking every action against the mask."""
    policy = baselines.get(name)
    env = gym.make_vec("GpuCluster-v0", num_envs=num_envs, trace=trace, num_jobs=len(trace), load=None,
                       cluster=cluster, action_mode=mode, preemption=True, round_length=policy.round_length,
                       restart_overhead=30.0, max_slots=len(trace), known_durations=policy.needs_durations,
                       max_steps=100_000)
    eng = baselines.engine_of(env)
    results = capture_episodes(env)
    _obs, info = env.reset(seed=0)
    for _ in range(100_000):
        action = baselines.act(policy, env)
        if mode == "pick":
            assert info["action_mask"][np.arange(num_envs), action].all()
        else:
            assert action.shape == (num_envs, len(trace)) and np.isfinite(action[action > -np.inf]).all()
        _obs, _r, _te, _tr, info = env.step(action)
        if len(results) == num_envs:
            break
    env.close()
    if mode == "pick":
        assert (eng.invalid == 0).all()
    return [results[e] for e in range(num_envs)]


@pytest.mark.parametrize(("name", "mode"), [("gavel", "priority"), ("gavel", "pick"), ("gavel_ftf", "priority")])
def test_vector_env_and_simulate_make_the_same_decisions(name, mode):
    trace = synthetic(40, load=2.0, cluster="tiny", seed=11, duration_range=(10, 20000))
    policy = baselines.get(name)
    expected = simulate(trace, "tiny", policy, restart_overhead=30.0, known_durations=policy.needs_durations).jobs
    assert expected["preemptions"].sum() > 0
    for jobs in run_vector(trace, name, mode, "tiny"):
        np.testing.assert_allclose(jobs["first_start"], expected["first_start"])
        np.testing.assert_allclose(jobs["finish"], expected["finish"])
        np.testing.assert_array_equal(jobs["preemptions"], expected["preemptions"])


@pytest.mark.parametrize("mode", ["pick", "priority"])
def test_runs_in_the_vector_env_on_a_mixed_cluster(mode):
    trace = gavel_workload(24, 6.0, seed=3, long_fraction=0.0)
    for jobs in run_vector(trace, "gavel_agnostic" if mode == "pick" else "gavel", mode, MIX):
        assert jobs["finish"].notna().all() and (jobs["finish"] > jobs["first_start"]).all()


# ---------------------------------------------------------------------------------- knobs
def test_registered_names_and_defaults():
    assert {"gavel", "gavel_agnostic", "gavel_ftf", "gavel_makespan"} <= set(baselines.names())
    assert baselines.get("gavel").knobs() == {"objective": "las", "heterogeneity_aware": True, "round_length": 360.0,
                                              "reset_interval": 1920.0, "work_conserving": True}
    assert not baselines.get("gavel_agnostic").heterogeneity_aware
    for name, objective in (("gavel_ftf", "ftf"), ("gavel_makespan", "makespan")):
        p = baselines.get(name)
        assert p.objective == objective and p.needs_durations and baselines.REGISTRY[name].needs_durations
    assert not baselines.get("gavel").needs_durations and not baselines.get("gavel_agnostic").needs_durations
    assert baselines.get("gavel", objective="makespan").needs_durations
    with pytest.raises(ValueError, match="needs job durations"):
        simulate(gavel_workload(3, 1.0, 0), MIX, baselines.get("gavel_ftf"), known_durations=False)
    # LAS needs no durations
    simulate(gavel_workload(3, 1.0, 0), MIX, baselines.get("gavel"), known_durations=False)


@pytest.mark.parametrize(("knobs", "message"), [
    ({"objective": "fifo"}, "objective must be one of"),
    ({"heterogeneity_aware": "yes"}, "heterogeneity_aware must be True or False"),
    ({"round_length": 0}, "round_length must be"),
    ({"round_length": float("inf")}, "round_length must be"),
    ({"reset_interval": -1}, "reset_interval must be"),
    ({"work_conserving": 1}, "work_conserving must be True or False"),
])
def test_bad_knobs_raise(knobs, message):
    with pytest.raises(ValueError, match=message):
        Gavel(**knobs)
