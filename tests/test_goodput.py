"""Goodput jobs (Pollux's model) in the core, and the Pollux policy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import envs
from baselines.pollux import Pollux, allowed_counts, knapsack
from envs import goodput
from envs.core import RUNNING, ClusterCore
from envs.policy import Allocation, ClusterView
from traces import clusters, pollux

APPS = ("bert", "cifar10", "deepspeech2", "imagenet", "ncf", "yolov3")


@pytest.fixture(scope="module")
def root(shared):
    return shared("reference", "pollux", what="the Pollux reference measurements")


@pytest.fixture(scope="module")
def workload6(root):
    return pollux.load_workload(root / "workloads" / "workload-6.csv")


# ------------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", APPS)
def test_throughput_model_fits_the_measurements(root, name):
    app = pollux.application(root, name)
    model = pollux.fit_throughput(app)
    assert model.gamma >= 1.0 and min(model.alpha_c, model.alpha_r, model.alpha_n) > 0
    obs = pollux._observations(app)
    pred = model.iteration_time(obs["replicas"], obs["nodes"] > 1, obs["local_bsz"])
    err = np.abs(pred / obs["step_time"].to_numpy() - 1.0)
    assert np.median(err) < 0.08 and np.quantile(err, 0.9) < 0.25
    # spanning nodes never synchronises faster than staying on one (same replicas and batch)
    k = np.arange(2, 5)
    assert (model.iteration_time(k, True, 8.0) >= model.iteration_time(k, False, 8.0) - 1e-12).all()


@pytest.mark.parametrize("name", APPS)
def test_statistical_efficiency(root, name):
    app = pollux.application(root, name)
    m0 = app.init_batch_size
    sizes = np.array(sorted(app.validation), dtype=np.float64)
    gains = pollux.epoch_gains(app, sizes)  # (epochs, sizes)
    np.testing.assert_allclose(gains[:, 0], 1.0)  # one iteration at M0 is one unit of progress
    scale = sizes / m0
    # a larger batch makes at least as much progress per iteration, never more than proportionally
    assert (gains >= 1.0 - 1e-9).all() and (gains <= scale[None, :] + 1e-9).all()
    # and on average over training, more at larger batches (the statistics are each size's own run)
    assert (np.diff(gains.mean(axis=0)) > 0).all()
    need = pollux.progress_needed(app)
    assert len(need) == app.epochs and (need > 0).all()


def test_table_adaptive_batch_and_gpu_types(root):
    kinds = [("cifar10", 2048), ("imagenet", 3200), ("bert", 384)]
    tab = goodput.build_table(root, kinds, ("t4", "v100", "k80"), max_gpus=16, phases=5)
    assert tab.rate.shape == (3, 5, 3, 17, 2, 2)
    assert (tab.rate[:, :, :, 0] == 0).all() and (tab.rate[:, :, :, 1:] > 0).all()
    np.testing.assert_allclose(tab.bounds[:, -1], 1.0)
    assert (np.diff(tab.bounds, axis=1) >= 0).all()
    # the goodput-optimal batch is (up to the candidate grid) at least as good as the job's own
    assert (tab.rate[..., 1] >= 0.97 * tab.rate[..., 0]).all()
    # V100 computes faster than T4, K80 slower (Gavel's ratios), for every kind
    one = tab.rate[:, 0, :, 1, 0, 0]
    assert (one[:, 1] > one[:, 0]).all() and (one[:, 2] < one[:, 0]).all()
    # late in training the gradient noise is larger: the best batch on 16 GPUs grows
    c = tab.kinds.index(("cifar10", 2048))
    assert tab.batch[c, -1, 0, 16, 1, 1] > tab.batch[c, 0, 0, 16, 1, 1]
    with pytest.raises(KeyError, match="no goodput kind"):
        tab.kind("cifar10", 7)
    with pytest.raises(ValueError, match="phases"):
        goodput.build_table(root, kinds, ("t4",), phases=0)


# ------------------------------------------------------------------------------- core
def _one_job(workload6, i):
    job = workload6.iloc[[i]].reset_index(drop=True)
    job.attrs = workload6.attrs
    return job


def test_goodput_job_alone_runs_for_its_reference_time(root, workload6):
    """A job alone at its own size and batch finishes after exactly the time its rate table
    implies, phase by phase (computed independently from the models)."""
    for i in (0, 2, 3):
        job = _one_job(workload6, i)
        app = workload6.attrs["pollux"]["application"][job["job_id"][0]]
        bsz = workload6.attrs["pollux"]["batch_size"][job["job_id"][0]]
        res = envs.simulate(job, clusters.pollux(), _fifo())
        expect = goodput.reference_time(root, app, int(job["num_gpus"][0]), int(bsz), gpu_type="t4")
        assert res.jobs["jct"][0] == pytest.approx(expect, rel=1e-9)
        assert res.events >= 2  # phase changes are events


def _fifo():
    from baselines import get

    return get("fifo")


def _core_with(workload6, rows, cluster=None, restart=None):
    trace = workload6.iloc[rows].reset_index(drop=True)
    trace.attrs = workload6.attrs
    spec = cluster or clusters.pollux()
    w = envs.make_workload(trace, spec, restart=restart)
    core = ClusterCore(spec, 1, restart_overhead=30.0)
    core.load(np.array([0]), [w])
    return core, w


def test_adaptive_switch_keeps_placement_and_changes_rate(workload6):
    core, _w = _core_with(workload6, [0])
    core.advance()  # the arrival
    view = ClusterView(core)
    n = np.zeros((1, core.S), dtype=np.int64)
    n[0, 0] = 4
    t = np.zeros_like(n)
    core.apply(n, t)
    place, rate = core.s_place[0, 0].copy(), core.s_rate[0, 0]
    expect = view.rate_at(4, 0, adaptive=True)[0, 0]
    core.apply(n, t, adaptive=np.ones_like(n, dtype=bool))
    assert (core.s_place[0, 0] == place).all() and core.j_restarts[0, 0] == 0
    assert core.s_rate[0, 0] == pytest.approx(expect) and core.s_rate[0, 0] != rate
    assert view.batch_size[0, 0] > 0


def test_per_application_restart_overhead(workload6):
    core, _w = _core_with(workload6, [0], restart=goodput.SIA_RESTART)
    app = workload6.attrs["pollux"]["application"][workload6["job_id"][0]]
    core.advance()
    n = np.zeros((1, core.S), dtype=np.int64)
    t = np.zeros_like(n)
    n[0, 0] = 2
    core.apply(n, t)
    core.advance()
    n[0, 0] = 4
    core.apply(n, t)  # a resize: a restart at the application's cost
    assert core.s_restart_until[0, 0] == pytest.approx(core.clock[0] + goodput.SIA_RESTART[app])
    assert core.j_restarts[0, 0] == 1


def test_phases_change_the_rate_during_training(workload6):
    core, _w = _core_with(workload6, [0])
    core.advance()
    n = np.zeros((1, core.S), dtype=np.int64)
    n[0, 0] = 4
    core.apply(n, np.zeros_like(n), adaptive=np.ones_like(n, dtype=bool))
    rates, phases = [], []
    while core.s_status[0, 0] == RUNNING:
        rates.append(core.s_rate[0, 0])
        phases.append(core.s_phase[0, 0])
        core.advance()
    assert phases == sorted(phases) and len(set(phases)) > 1
    assert len(set(np.round(rates, 12))) > 1


# ------------------------------------------------------------------------------- Pollux
def test_knapsack_is_optimal_against_brute_force():
    rng = np.random.default_rng(0)
    sizes = np.array([0, 1, 2, 4])
    for _ in range(30):
        J, cap = int(rng.integers(1, 5)), int(rng.integers(0, 9))
        costs = rng.random((J, len(sizes))) * 10
        costs[rng.random(costs.shape) < 0.2] = np.inf
        costs[:, 0] = rng.random(J) * 20  # "nothing" always allowed
        picks, total = knapsack(costs, sizes, cap)
        best = min(
            (sum(costs[j, c] for j, c in enumerate(combo)) for combo in itertools.product(range(len(sizes)), repeat=J)
             if sum(sizes[c] for c in combo) <= cap),
        )
        assert total == pytest.approx(best)
        assert sizes[picks].sum() <= cap and sum(costs[j, c] for j, c in enumerate(picks)) == pytest.approx(best)


def _knapsack_numpy(costs, sizes, capacity):
    """The knapsack's dynamic programme as array operations (the reference of the compiled one)."""
    J = costs.shape[0]
    sizes = np.broadcast_to(np.asarray(sizes, dtype=np.int64), costs.shape)
    best, choice, g = np.zeros(capacity + 1), np.zeros((J, capacity + 1), dtype=np.int64), np.arange(capacity + 1)
    for j in range(J):
        prev = g[:, None] - sizes[j][None, :]
        cand = np.where(prev >= 0, best[np.maximum(prev, 0)] + costs[j][None, :], np.inf)
        choice[j] = cand.argmin(axis=1)
        best = cand[g, choice[j]]
    picks, cap = np.zeros(J, dtype=np.int64), capacity
    for j in range(J - 1, -1, -1):
        picks[j] = choice[j, cap]
        cap -= int(sizes[j, picks[j]])
    return picks, float(best[capacity])


def test_compiled_knapsack_equals_the_array_programme_with_ties_and_nan():
    rng = np.random.default_rng(1)
    for _ in range(200):
        J, C, cap = int(rng.integers(1, 12)), int(rng.integers(1, 6)), int(rng.integers(0, 40))
        costs = rng.integers(0, 4, (J, C)).astype(float)  # small integers: many ties
        costs[rng.random(costs.shape) < 0.2] = np.inf
        costs[rng.random(costs.shape) < 0.03] = np.nan
        sizes = rng.integers(0, 9, (J, C))
        sizes[:, 0] = 0  # item 0: nothing
        got, want = knapsack(costs, sizes, cap), _knapsack_numpy(costs, sizes, cap)
        assert got[0].tolist() == want[0].tolist()
        assert got[1] == want[1] or (np.isnan(got[1]) and np.isnan(want[1]))


def test_rate_at_with_candidates_equals_one_call_per_candidate(workload6):
    core, _w = _core_with(workload6, list(range(6)))
    for _ in range(6):
        core.advance()
    view = ClusterView(core)
    counts = np.stack([np.full(core.s_job.shape, c) for c in (0, 1, 2, 3, 4, 8, 16)], axis=2)
    nodes = np.maximum(1, -(-counts // 4)) + (counts % 3 == 0)
    for adaptive in (False, True):
        got = view.rate_at(counts, 0, nodes=nodes, adaptive=adaptive)
        want = np.stack([view.rate_at(counts[:, :, c], 0, nodes=nodes[:, :, c], adaptive=adaptive)
                         for c in range(counts.shape[2])], axis=2)
        assert got.shape == counts.shape and (got == want).all() and (got > 0).any()
        default = view.rate_at(counts, 0, adaptive=adaptive)  # fewest nodes per candidate
        assert (default == np.stack([view.rate_at(counts[:, :, c], 0, adaptive=adaptive)
                                     for c in range(counts.shape[2])], axis=2)).all()
    with pytest.raises(ValueError, match="broadcast"):
        view.rate_at(np.zeros((2, 3, 4, 5), dtype=np.int64), 0)


def test_allowed_counts_pack_nodes():
    assert allowed_counts(4, 16).tolist() == [1, 2, 4, 8, 12, 16]
    assert allowed_counts(8, 24).tolist() == [1, 2, 4, 8, 16, 24]


class _Recorder(Pollux):
    """Pollux that checks its own allocations as it goes."""

    def __init__(self) -> None:
        super().__init__()
        self.peak: dict[int, int] = {}
        self.violations = 0

    def plan(self, view):
        decision = super().plan(view)
        if decision is not None:
            for s in np.flatnonzero(view.status[0] != 0):
                j, n = int(view.job[0, s]), int(decision.n[0, s])
                if n > max(2 * self.peak.get(j, 0), 1):
                    self.violations += 1
                self.peak[j] = max(self.peak.get(j, 0), n)
            assert (decision.n.sum(axis=1) <= view.total_gpus).all()
        return decision


def test_pollux_beats_tiresias_beats_optimus_on_workload6(workload6):
    """The Pollux paper's headline on its workload 6 (artifact README: Pollux 2,446 s,
    Tiresias 3,470 s, Optimus+Oracle 5,302 s), with the artifact's settings."""
    from baselines import get

    rec = _Recorder()
    res = {
        "pollux": envs.simulate(workload6, "pollux", rec),
        "tiresias": envs.simulate(workload6, "pollux", get("tiresias", thresholds=[57600.0], round_length=60.0,
                                                          preempt="round")),
        "optimus": envs.simulate(workload6, "pollux", get("optimus", interval=60.0)),
    }
    jct = {k: r.metrics["avg_jct"] for k, r in res.items()}
    assert all(r.metrics["unfinished"] == 0 for r in res.values())
    assert jct["pollux"] < jct["tiresias"] < jct["optimus"]
    assert jct["pollux"] == pytest.approx(2446, rel=0.10)
    assert jct["tiresias"] == pytest.approx(3470, rel=0.10)
    assert jct["optimus"] == pytest.approx(5302, rel=0.15)
    assert rec.violations == 0  # the exploration cap: never more than twice the largest so far
    # Pollux adapts batch sizes and keeps the cluster busy
    assert res["pollux"].metrics["utilization"] > res["tiresias"].metrics["utilization"]


def test_pollux_in_the_vector_env_and_knobs():
    import gymnasium as gym

    import baselines

    env = gym.make_vec("GpuCluster-v0", num_envs=3, vectorization_mode="vector_entry_point",
                       num_jobs=12, elastic_fraction=1.0, preemption=True, round_length=60.0)
    env.reset(seed=0)
    policy = baselines.get("pollux")
    for _ in range(40):
        action = baselines.act(policy, env)
        env.step(action)
    env.close()
    for bad in ({"round_length": 0}, {"p": 0.5}, {"restart_delta": -1}, {"growth": 0.5}):
        with pytest.raises(ValueError):
            Pollux(**bad)


def test_pollux_plain_allocation_is_valid_on_mixed_cluster(workload6):
    spec = clusters.get("gavel")
    trace = workload6.iloc[:40].reset_index(drop=True)
    trace.attrs = workload6.attrs
    res = envs.simulate(trace, spec, Pollux())
    assert res.metrics["unfinished"] == 0


def test_allocation_adaptive_flag_is_optional():
    a = Allocation(np.zeros((1, 2), dtype=np.int64), np.zeros((1, 2), dtype=np.int64))
    assert a.adaptive is None


def test_pollux_schedules_rigid_plain_jobs():
    """Plain rigid gangs (3 GPUs: not a power of two) still run: their request is a candidate."""
    from traces import make_trace

    trace = make_trace({"submit_time": [0.0, 10.0, 20.0, 30.0], "duration": [500.0, 800.0, 300.0, 900.0],
                        "num_gpus": [3, 1, 6, 2], "model": ["resnet50", "lm", "resnet18", "transformer"]})
    res = envs.simulate(trace, clusters.homogeneous(2, 4), Pollux())
    assert res.metrics["unfinished"] == 0
    assert (res.jobs["gpus_last"] == res.jobs["num_gpus"]).all()


@pytest.mark.parametrize("name", ["pollux", "sia"])
def test_skipping_settled_rounds_changes_nothing(name, monkeypatch):
    """Pollux and Sia skip their optimisation in rounds where every job is a running rigid gang
    (``baselines.base.settled``); running it anyway must give the same schedule."""
    import importlib

    from baselines import get
    from traces import synthetic

    spec = clusters.get("tiny")
    trace = synthetic(40, load=1.5, cluster=spec, seed=3)
    skipped = envs.simulate(trace, spec, get(name), known_durations=True, seed=0)
    module = importlib.import_module(f"baselines.{name}")
    real, settled_rounds = module.settled, []

    def never(view):
        settled_rounds.append(bool(real(view).any()))
        return np.zeros(view.num_envs, dtype=bool)

    monkeypatch.setattr(module, "settled", never)
    full = envs.simulate(trace, spec, get(name), known_durations=True, seed=0)
    assert sum(settled_rounds) > 10, "the window has too few settled rounds to exercise the skip"
    pd.testing.assert_frame_equal(skipped.jobs, full.jobs)


# ------------------------------------------------------------------------------- the workloads together
def test_the_workloads_one_after_another_keep_every_job_and_its_record(root):
    """``load_workloads``: the jobs of each workload in order, names prefixed, submissions never
    going back in time, each job's run time and goodput record those of its own workload."""
    both = pollux.load_workloads(root, (2, 6))
    w2 = pollux.load_workload(root / "workloads" / "workload-2.csv")
    w6 = pollux.load_workload(root / "workloads" / "workload-6.csv")
    assert len(both) == len(w2) + len(w6) and both["job_id"].is_unique
    assert (np.diff(both["submit_time"].to_numpy()) >= 0).all()
    assert both["submit_time"].iloc[len(w2)] > w2["submit_time"].iloc[-1]
    np.testing.assert_array_equal(both["duration"].to_numpy(), np.concatenate([w2["duration"], w6["duration"]]))
    meta = both.attrs["pollux"]
    for k, w in ((2, w2), (6, w6)):
        for key in ("run_time", "application", "batch_size"):
            assert {f"w{k}-{name}": v for name, v in w.attrs["pollux"][key].items()}.items() <= meta[key].items()
    with pytest.raises(pollux.PolluxDataError, match=r"workload-9\.csv: no such workload file"):
        pollux.load_workloads(root, (9,))


def test_windows_of_one_trace_share_a_goodput_table_and_step_together_as_alone(root):
    """Two windows of the workloads with different application mixes, stepped by one core
    (``simulate_many``), give each the schedule it gets alone: they share one goodput table
    (built from every job the trace records), so each job keeps its own kind."""
    from traces import window

    spec = clusters.pollux()
    trace = window(pollux.load_workloads(root, (1, 2, 3)), 0.0, num_jobs=480, load=1.0, cluster=spec)
    parts = [window(trace.iloc[a:a + 24].reset_index(drop=True), float(trace["submit_time"].iloc[a]), num_jobs=24)
             for a in (0, 300)]
    assert set(parts[0]["vc"]) != set(parts[1]["vc"])  # the mixes differ, so would per-window tables
    together = envs.simulate_many(parts, spec, Pollux(), seeds=[0, 0])
    for part, res in zip(parts, together, strict=True):
        alone = envs.simulate(part, spec, Pollux(), seed=0)
        pd.testing.assert_frame_equal(res.jobs, alone.jobs)


def test_a_core_refuses_workloads_with_goodput_tables_of_different_kinds(root):
    from envs.workload import make_workload

    def own_kinds_only(rows):
        """The first ``rows`` jobs of workload 6, recording only themselves (a table of their kinds)."""
        w = pollux.load_workload(root / "workloads" / "workload-6.csv").iloc[:rows].reset_index(drop=True)
        names = set(w["job_id"])
        meta = w.attrs["pollux"]
        w.attrs["pollux"] = {k: ({n: x for n, x in v.items() if n in names} if isinstance(v, dict) else v)
                             for k, v in meta.items()}
        return w

    spec = clusters.pollux()
    a, b = make_workload(own_kinds_only(2), spec), make_workload(own_kinds_only(40), spec)
    assert a.goodput.kinds != b.goodput.kinds
    core = ClusterCore(spec, 2)
    with pytest.raises(ValueError, match="tables of different kinds"):
        core.load(np.arange(2), [a, b])
