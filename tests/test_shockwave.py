"""Shockwave (baselines.shockwave): its window program, its foresight of dynamic adaptation, its
mechanism, and its headline claim.

Claim (Shockwave, NSDI'23; its artifact, 120 jobs on 32 GPUs: makespan 24,197 s vs 33,208 s and
5% vs 25% unfair jobs against Gavel's max-min fairness): fewer jobs with finish-time fairness
rho > 1 than Gavel-LAS and a makespan no worse, on a contended window of dynamically adapting jobs.

Workload (:func:`leaderboard.paper_workloads.shockwave_trace`): the artifact's generator (``generate_trace.py``: 120 jobs,
GPU counts 1/2/4/8 with 60/30/9/1%, durations from 100 equally spaced values in 0.2-5 h drawn
small/medium/large/extra-large with 72/20/5/3%, Poisson arrivals 40 s apart on average, every
job dynamically adapting as the artifact's accordion/GNS mix is) on 4 nodes x 8 V100 with the
core's 30 s restart overhead. Measured on seeds 0-5 (unfair fraction, makespan in s; "artifact
knobs" is ``Shockwave(k=1e-3, log_bases=ARTIFACT_LOG_BASES, fair_share="jobs", ftf="artifact",
restart_aware=False)``, see the module docstring of :mod:`baselines.shockwave`):

====  ===============  ===============  ===============
seed  shockwave        gavel (LAS)      artifact knobs
====  ===============  ===============  ===============
0     0.267  37,648    0.358  50,612    0.592  43,524
1     0.267  38,528    0.250  39,704    0.625  32,074
2     0.250  27,820    0.325  30,503    0.575  29,245
3     0.308  35,280    0.292  36,868    0.617  32,506
4     0.142  39,484    0.183  40,401    0.458  44,053
5     0.333  49,140    0.275  51,993    0.625  36,501
mean  0.261  37,983    0.281  41,680    0.582  36,317
====  ===============  ===============  ===============

The claim holds on average (both metrics) and Shockwave's makespan is the shorter on every
seed; it has fewer unfair jobs on seeds 0, 2 and 4, a few more on 1, 3 and 5. These per-seed
figures depend on how the LP and MILP solvers break ties between equally good rounds, which
moves with the machine and the build of the numerical libraries: an earlier measurement of the
same code elsewhere gave means 0.271 vs 0.300 and 36,053 vs 39,932 s, with Shockwave ahead on
seeds 0-2 instead. The tests therefore check the means and a count of seeds, not one seed's
margin. Counting rho > 1.05 as unfair (the artifact's own threshold,
``reproduce/aggregate_result.py``) Gavel-LAS was ahead on 4 seeds of 6 in the earlier
measurement (means 0.157 vs 0.195): Shockwave's jobs end near rho = 1, its target. Without foresight of the speed-ups (remaining time read at the current
rate) the unfair fraction rises on every seed (mean 0.261 -> 0.503).
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import baselines
import envs  # noqa: F401 (registers GpuCluster-v0)
from baselines.shockwave import (
    ARTIFACT_LOG_BASES,
    LOG_BASES,
    Shockwave,
    artifact_rho,
    artifact_unfair_fraction,
    continue_first,
    growth_multiplier,
    log_segments,
    plan_window,
    rank_window,
    remaining_time,
)
from envs import ClusterCore, ClusterView, make_workload, simulate
from envs.policy import execute
from leaderboard.paper_workloads import TACC_32, shockwave_trace, static_batch_durations
from traces import clusters, make_trace, synthetic

TACC = TACC_32


_CACHE: dict = {}


def replay(name: str, seed: int = 2, **knobs):
    key = (name, seed, tuple(sorted(knobs.items())))
    if key not in _CACHE:
        _CACHE[key] = simulate(shockwave_trace(120, seed), TACC, baselines.get(name, **knobs), dynamic_fraction=1.0)
    return _CACHE[key]


def show(label: str, m: dict) -> None:
    print(f"{label:24s} unfair={m['unfair_fraction']:.3f} makespan={m['makespan']:.0f} s "
          f"avg JCT={m['avg_jct']:.0f} s max rho={m['max_rho']:.2f} util={m['utilization']:.3f}")


# ---------------------------------------------------------------------------------- the claim
def test_fewer_unfair_jobs_than_gavel_las_and_a_makespan_no_worse():
    """On average over the six workloads of the table above, and on at least half of them (the
    claim does not hold on every seed)."""
    sw = [replay("shockwave", seed).metrics for seed in range(6)]
    gv = [replay("gavel", seed).metrics for seed in range(6)]
    for seed in range(6):
        show(f"seed {seed} shockwave", sw[seed])
        show(f"seed {seed} gavel (LAS)", gv[seed])
    assert all(m["unfinished"] == 0 for m in sw + gv)
    mean = lambda runs, key: float(np.mean([m[key] for m in runs]))  # noqa: E731
    assert mean(sw, "unfair_fraction") < mean(gv, "unfair_fraction")  # measured 0.261 vs 0.281
    assert mean(sw, "makespan") <= mean(gv, "makespan")  # measured 37,983 s vs 41,680 s
    # fewer unfair jobs on at least half the seeds (measured: 3 of 6 here, 3 of 6 elsewhere)
    assert sum(a["unfair_fraction"] < b["unfair_fraction"] for a, b in zip(sw, gv, strict=True)) >= 3


def test_artifact_setting_at_small_scale_fewer_unfair_jobs_by_the_artifacts_metric():
    """The artifact's setting at half scale (60 jobs on 16 GPUs, the same 3.75 jobs per GPU):
    drawn durations at the initial batch size, no restart overhead, Gavel at 120 s rounds,
    Shockwave with the artifact's fair share min(1, G / N), unfairness by the artifact's metric
    (:func:`artifact_unfair_fraction`). Measured on seeds 0-3: Shockwave 0.417, 0.117, 0.183,
    0.150 (mean 0.217) vs Gavel 0.383, 0.317, 0.183, 0.300 (mean 0.296); the paper's 5% vs 25% is
    not reached (``docs/magnitude_gaps.md``), and Shockwave's makespan is 11-27% longer than
    Gavel's here (the paper: 27% shorter)."""
    spec = clusters.homogeneous(2, 8, name="tacc-16")
    sw, gv = [], []
    for seed in range(4):
        trace = static_batch_durations(shockwave_trace(60, seed), spec, seed=seed)
        args = dict(dynamic_fraction=1.0, restart_overhead=0.0, seed=seed)
        a = simulate(trace, spec, baselines.get("shockwave", fair_share="jobs"), **args)
        b = simulate(trace, spec, baselines.get("gavel", round_length=120.0), **args)
        sw.append(artifact_unfair_fraction(a.jobs, spec.num_gpus))
        gv.append(artifact_unfair_fraction(b.jobs, spec.num_gpus))
        print(f"seed {seed}: unfair (artifact metric) shockwave {sw[-1]:.3f} gavel {gv[-1]:.3f}; makespan "
              f"{a.metrics['makespan']:.0f} s vs {b.metrics['makespan']:.0f} s")
    assert np.mean(sw) <= np.mean(gv) - 0.05


def test_foresight_of_dynamic_adaptation_lowers_unfairness():
    """The same replay with remaining times read at the current rate (no foresight of the
    speed-ups): more unfair jobs (measured 0.250 -> 0.492 on seed 2; every seed 0-5 rises by
    0.19 to 0.30)."""
    sw = replay("shockwave").metrics
    blind = replay("shockwave", foresight=False).metrics
    show("shockwave", sw)
    show("shockwave, no foresight", blind)
    assert sw["unfair_fraction"] <= blind["unfair_fraction"] - 0.1


# ---------------------------------------------------------------------------------- the artifact's workload
def test_trace_generator_draws_the_artifacts_distributions():
    """Large-sample check of ``shockwave_trace`` against the artifact's generator parameters."""
    tr = shockwave_trace(20_000, 7)
    gpus = tr["num_gpus"].value_counts(normalize=True)
    for n, p in {1: 0.6, 2: 0.3, 4: 0.09, 8: 0.01}.items():
        assert gpus[n] == pytest.approx(p, abs=0.015)
    hours = tr["duration"].to_numpy() / 3600
    grid = np.linspace(0.2, 5.0, 100)
    assert np.isclose(hours[:, None], grid[None, :]).any(axis=1).all()  # one of the 100 values
    size_class = np.searchsorted([grid[20], grid[50], grid[90]], hours + 1e-9)
    for c, p in enumerate([0.72, 0.2, 0.05, 0.03]):
        assert (size_class == c).mean() == pytest.approx(p, abs=0.015)
    gaps = np.diff(tr["submit_time"].to_numpy())
    assert tr["submit_time"].iloc[0] == 0.0 and gaps.mean() == pytest.approx(40.0, rel=0.03)
    assert shockwave_trace(120, 3).equals(shockwave_trace(120, 3))
    with pytest.raises(ValueError, match="num_jobs"):
        shockwave_trace(0, 0)


def test_static_batch_durations_make_the_drawn_duration_the_initial_speed_run_time():
    """An adapting job with the rescaled duration does its first quarter of work (phase 0, its
    initial batch size) in a quarter of the drawn duration: the time a static job of the drawn
    duration takes for the same quarter."""
    trace = make_trace(pd.DataFrame({"submit_time": [0.0], "duration": [8000.0], "num_gpus": [2], "model": ["resnet50"]}))
    spec = clusters.homogeneous(1, 4, name="one-node")
    scaled = static_batch_durations(trace, spec, seed=0)
    assert scaled["duration"][0] < 8000.0
    wl = make_workload(scaled, spec, dynamic_fraction=1.0)
    core = ClusterCore(spec, 1)
    core.load(np.array([0]), [wl])
    view = ClusterView(core)
    policy = baselines.get("fifo")
    policy.reset(view)
    first_phase_end = None
    while not core.done[0]:
        execute(core, policy.decide(view))
        core.advance()
        if first_phase_end is None and int(view.phase[0, 0]) >= 1:
            first_phase_end = float(core.clock[0])
    assert first_phase_end == pytest.approx(8000.0 / 4)
    # the whole job alone: shorter than the drawn duration (it speeds up), equal to the new duration
    assert core.j_finish[0, 0] == pytest.approx(scaled["duration"][0])
    # static jobs keep their duration
    static = static_batch_durations(trace, spec, seed=0, dynamic_fraction=0.0)
    assert static["duration"][0] == 8000.0


def test_artifact_rho_uses_the_static_contention_factor():
    """rho = JCT / (run time alone x max(1, N / G)), unfair above 1.05."""
    jobs = pd.DataFrame({"jct": [400.0, 420.0, 100.0, 50.0], "duration": [100.0, 100.0, 100.0, 10.0]})
    np.testing.assert_allclose(artifact_rho(jobs, 1), [1.0, 1.05, 0.25, 1.25])  # N / G = 4
    assert artifact_unfair_fraction(jobs, 1) == pytest.approx(0.25)  # 1.05 is not above 1.05
    np.testing.assert_allclose(artifact_rho(jobs, 8), [4.0, 4.2, 1.0, 5.0])  # N < G: factor 1
    with pytest.raises(ValueError, match="total_gpus"):
        artifact_rho(jobs, 0)


# ---------------------------------------------------------------------------------- foresight
def test_predicted_remaining_time_is_the_simulators_run_time():
    """A dynamically adapting job alone: at every phase change, now + predicted remaining time is
    its finish time, and the predicted total is its trace duration."""
    spec = clusters.homogeneous(1, 4, name="one-node")
    trace = make_trace(pd.DataFrame({"submit_time": [0.0], "duration": [5000.0], "num_gpus": [2], "model": ["resnet50"]}))
    wl = make_workload(trace, spec, dynamic_fraction=1.0)
    assert wl.growth[0] > 1.0
    core = ClusterCore(spec, 1)
    core.load(np.array([0]), [wl])
    view = ClusterView(core)
    policy = Shockwave()
    policy.reset(view)
    phases_seen = set()
    while not core.done[0]:
        pred = policy.predictions(view)
        assert core.clock[0] + pred["remaining"][0, 0] == pytest.approx(5000.0)
        assert pred["done_time"][0, 0] + pred["remaining"][0, 0] == pytest.approx(5000.0)
        phases_seen.add(int(view.phase[0, 0]))
        execute(core, policy.decide(view))
        core.advance()
    assert phases_seen == set(range(core.dynamic_phases))
    assert core.j_finish[0, 0] == pytest.approx(5000.0)


def test_remaining_time_against_a_step_by_step_integration():
    rng = np.random.default_rng(0)
    for _ in range(20):
        work, g, nominal = rng.uniform(100, 1e4), rng.uniform(1.0, 2.0), rng.uniform(0.2, 3.0)
        start = rng.uniform(0, work)
        # integrate in small work steps at the phase's speed
        grid = np.linspace(start, work, 200_001)
        mid = (grid[:-1] + grid[1:]) / 2
        phase = np.minimum((mid / work * 4).astype(int), 3)
        speed = growth_multiplier(np.full(len(mid), g), phase, 4) * nominal
        expect = (np.diff(grid) / speed).sum()
        assert remaining_time(work, start, g, 4, nominal) == pytest.approx(expect, rel=1e-4)
    # normalised: alone, a job runs for its work at nominal speed 1
    assert remaining_time(3600.0, 0.0, 1.5, 4, 1.0) == pytest.approx(3600.0)


# ---------------------------------------------------------------------------------- programs
def objective(x, gpus, capacity, remaining, progress, step, *, rounds, round_length, k, weights=None, slack=None,
              due=None, need=None, keep=None, bases=LOG_BASES, origin=1e-6):
    """The window program's objective at plan ``x`` (-inf if ``x`` breaks a constraint), computed
    independently of the MILP: e_j is the most progress the job's rounds give."""
    N, R, L = len(gpus), rounds, round_length
    w = np.ones(N) if weights is None else weights
    b, v, _ = log_segments(bases, origin)
    if ((gpus @ x) > capacity).any():
        return -np.inf
    n = x.sum(axis=1)
    if slack is not None:
        on = ~np.isnan(slack)
        if (np.maximum(remaining[on] - L * n[on], 0.0) > slack[on] + 1e-9).any():
            return -np.inf
    if need is not None and any(x[j, :due[j]].sum() < need[j] for j in range(N)):
        return -np.inf
    e = np.minimum(step * n, 1.0 - progress)
    U = np.interp(progress + e, b, v)
    M = max(0.0, float((remaining - L * n).max()))
    value = float((w * U).sum() / (N * R) - k * M)
    return value + (0.0 if keep is None else float((keep * x[:, 0]).sum()))


def brute_force(gpus, *args, rounds, **kw):
    """The best objective over every x in {0, 1}^(N x R)."""
    N = len(gpus)
    return max(objective(np.array(bits, dtype=bool).reshape(N, rounds), gpus, *args, rounds=rounds, **kw)
               for bits in itertools.product([0, 1], repeat=N * rounds))


@pytest.mark.parametrize("seed", range(6))
def test_window_program_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    N, R, L = 3, 3, 120.0
    gpus = rng.choice([1, 2, 4], N).astype(float)
    capacity = 4
    remaining = rng.uniform(50, 1000, N)
    progress = rng.uniform(0, 0.9, N)
    step = rng.uniform(0.02, 0.4, N)
    kw = dict(rounds=R, round_length=L, k=float(rng.choice([0.0, 1e-4, 1e-3])))
    cases = [{}, {"weights": rng.uniform(1, 50, N)}, {"keep": np.where(rng.random(N) < 0.5, 0.05, 0.0)},
             {"bases": ARTIFACT_LOG_BASES}]
    slack = np.where(rng.random(N) < 0.7, remaining - L * rng.integers(0, R + 1, N), np.nan)
    cases.append({"slack": slack})
    due = rng.integers(1, R + 1, N)
    cases.append({"due": due, "need": np.where(rng.random(N) < 0.6, rng.integers(0, 2, N), 0)})
    for extra in cases:
        want = brute_force(gpus, capacity, remaining, progress, step, **kw, **extra)
        got = plan_window(gpus, capacity, remaining, progress, step, **kw, **extra, mip_rel_gap=0.0, node_limit=None)
        if want == -np.inf:
            assert got is None
            continue
        x, value = got
        assert value == pytest.approx(want, abs=1e-7)
        assert objective(x, gpus, capacity, remaining, progress, step, **kw, **extra) == pytest.approx(want, abs=1e-7)


def test_fairness_constraints_that_cannot_hold_are_reported_infeasible():
    gpus, remaining = np.array([1.0, 1.0]), np.array([1000.0, 100.0])
    args = dict(rounds=2, round_length=120.0, k=1e-3)
    # job 0 cannot finish fairly: 1000 s left, the window gives at most 240 s, slack 100 s
    assert plan_window(gpus, 2, remaining, np.zeros(2), np.full(2, 0.1), slack=np.array([100.0, np.nan]), **args) is None
    # job 1 must run in round 0 (due before round 1); one GPU: job 0 cannot run in round 0
    x, _ = plan_window(gpus, 1, remaining, np.zeros(2), np.full(2, 0.1), due=np.array([0, 1]),
                       need=np.array([0, 1]), **args)
    assert x[1, 0] and not x[0, 0]


def test_rank_window_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        N, R, cap = 4, 3, 4
        gpus = rng.choice([1, 2], N)
        x = np.zeros((N, R), dtype=bool)
        for r in range(R):  # a random feasible plan
            free = cap
            for j in rng.permutation(N):
                if gpus[j] <= free and rng.random() < 0.6:
                    x[j, r] = True
                    free -= gpus[j]
        prio = rng.uniform(1, 100, N)
        n = x.sum(axis=1)

        def cost(y, prio=prio, n=n):
            return sum(prio[j] / n[j] * np.flatnonzero(y[j]).sum() for j in range(len(n)) if n[j] > 0)

        best = np.inf
        for bits in itertools.product([0, 1], repeat=N * R):
            y = np.array(bits, dtype=bool).reshape(N, R)
            if (y.sum(axis=1) == n).all() and ((gpus @ y) <= cap).all():
                best = min(best, cost(y))
        y = rank_window(x, prio, gpus, cap, mip_rel_gap=0.0, node_limit=None)
        assert (y.sum(axis=1) == n).all() and ((gpus @ y) <= cap).all()
        assert cost(y) == pytest.approx(best)


def test_continue_first_keeps_running_jobs_in_the_executed_round():
    x = np.array([[0, 1, 1], [1, 0, 0], [0, 1, 0]], dtype=bool)
    running = np.array([True, False, True])
    y = continue_first(x, running)
    assert y[:, 0].tolist() == [True, False, True]
    assert (np.sort(y, axis=1) == np.sort(x, axis=1)).all()  # same rounds per job
    # ... unless that breaks a due constraint: job 1 must run in round 0
    assert (continue_first(x, running, due=np.array([0, 1, 0]), need=np.array([0, 1, 0])) == x).all()


def test_artifact_breakpoints_stall_progress_at_20_percent():
    """Why ``log_bases`` is refined: with the artifact's (0, .2, ..., 1) and log 0 read as log 1e-6,
    the marginal utility of progress drops 17x at 20%, so a job just past 20% loses its round to a
    job just below it even when the latter is 10x slower to progress."""
    _, _, art = log_segments(ARTIFACT_LOG_BASES, 1e-6)
    assert art[0] / art[1] > 17
    gpus, rem = np.ones(2), np.array([3000.0, 3000.0])
    progress, step = np.array([0.19, 0.21]), np.array([0.004, 0.04])
    args = dict(rounds=1, round_length=120.0, k=0.0, mip_rel_gap=0.0)
    x_art, _ = plan_window(gpus, 1, rem, progress, step, bases=ARTIFACT_LOG_BASES, **args)
    x_new, _ = plan_window(gpus, 1, rem, progress, step, bases=LOG_BASES, **args)
    assert x_art[:, 0].tolist() == [True, False]
    assert x_new[:, 0].tolist() == [False, True]


# ---------------------------------------------------------------------------------- mechanism
def test_replans_on_arrivals_and_every_eight_rounds():
    """Four long jobs on two GPUs from t = 0 (no arrival or completion for hours): one solve at
    t = 0, then one every 8 rounds; an arrival triggers one at the next round boundary."""
    spec = clusters.homogeneous(1, 2, name="two")
    rows = [(0.0, 1e6, 1, "lm")] * 4 + [(10 * 120.0 + 5, 1e6, 1, "lm")]
    trace = make_trace(pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"]))
    policy = Shockwave()
    core = ClusterCore(spec, 1, round_length=policy.round_length)
    view = ClusterView(core)
    policy.reset(view)
    core.load(np.array([0]), [make_workload(trace, spec)])
    solves_at = []
    while core.clock[0] < 20 * 120.0:
        before = policy.stats["solves"]
        execute(core, policy.decide(view))
        if policy.stats["solves"] > before:
            solves_at.append(round(float(core.clock[0])))
        view.at_round_boundary = core.advance().round_hit
    assert solves_at == [0, 8 * 120, 11 * 120, 19 * 120]
    assert (core.free[0] == 0).all()  # work conserving: both GPUs busy


def test_no_gpu_left_idle_while_a_waiting_job_fits():
    trace = synthetic(40, load=2.0, cluster="tiny", seed=5, duration_range=(60, 20000))
    spec = clusters.get("tiny")
    policy = Shockwave()
    core = ClusterCore(spec, 1, round_length=policy.round_length)
    view = ClusterView(core)
    policy.reset(view)
    core.load(np.array([0]), [make_workload(trace, spec, dynamic_fraction=0.5)])
    while not core.done[0]:
        execute(core, policy.decide(view))
        waiting = view.waiting[0]
        if waiting.any():
            assert view.gpus[0][waiting].min() > core.free[0].sum()
        view.at_round_boundary = core.advance().round_hit


@pytest.mark.parametrize("mode", ["priority", "pick"])
def test_runs_in_the_vector_env(mode):
    trace = synthetic(30, load=2.0, cluster="tiny", seed=11, duration_range=(60, 20000))
    policy = baselines.get("shockwave")
    env = gym.make_vec("GpuCluster-v0", num_envs=2, trace=trace, num_jobs=len(trace), load=None, cluster="tiny",
                       action_mode=mode, preemption=True, round_length=policy.round_length, restart_overhead=30.0,
                       max_slots=len(trace), known_durations=True, max_steps=100_000)
    eng = baselines.engine_of(env)
    _obs, info = env.reset(seed=0)
    finished = 0
    for _ in range(20_000):
        action = baselines.act(policy, env)
        if mode == "pick":
            assert info["action_mask"][np.arange(2), action].all()
        _obs, _r, term, trunc, info = env.step(action)
        finished += int((term | trunc).sum())
        if finished >= 2:
            break
    env.close()
    assert finished >= 2
    assert (eng.invalid == 0).all()


def test_runs_on_a_mixed_cluster_and_refuses_hidden_durations():
    mix = clusters.from_counts("mix", [("v100", 1, 4, 32, 244), ("k80", 1, 4, 32, 244)])
    res = simulate(synthetic(30, load=2.0, cluster=mix, seed=3, duration_range=(60, 20000)), mix,
                   baselines.get("shockwave"), dynamic_fraction=0.5)
    assert res.metrics["unfinished"] == 0
    with pytest.raises(ValueError, match="needs job durations"):
        simulate(synthetic(5, load=1.0, cluster="tiny", seed=0), "tiny", baselines.get("shockwave"), known_durations=False)


# ---------------------------------------------------------------------------------- knobs
def test_registered_with_its_knobs():
    p = baselines.get("shockwave")
    assert isinstance(p, Shockwave) and p.needs_durations and p.round_length == 120.0
    knobs = p.knobs()
    assert knobs["future_rounds"] == 8 and knobs["replan_every"] == 8 and knobs["lam"] == 12.0
    assert knobs["rhomax"] == 1.0 and knobs["log_bases"] == LOG_BASES
    assert baselines.get("shockwave", k=1e-3).k == 1e-3


@pytest.mark.parametrize("knobs", [
    {"round_length": 0}, {"future_rounds": 0}, {"future_rounds": 2.5}, {"replan_every": 12},
    {"k": -1.0}, {"lam": float("nan")}, {"rhomax": 0.0}, {"log_bases": (0.1, 1.0)}, {"log_bases": (0.0, 0.5, 0.4, 1.0)},
    {"log_origin": 0.5}, {"momentum": 1.5}, {"time_limit": 0}, {"mip_rel_gap": -1}, {"node_limit": 0},
    {"fair_share": "nodes"}, {"ftf": "none"},
])
def test_bad_knobs_raise(knobs):
    with pytest.raises(ValueError):
        Shockwave(**knobs)
