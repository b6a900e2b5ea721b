"""The simulation core and whole-trace replay: job model fidelity, API errors, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import Allocation, AllocationError, ClusterCore, Policy, Priority, make_workload, simulate
from envs.metrics import summarize
from traces import clusters, make_trace, models, synthetic


class OldestFirst(Policy):
    """Backfilling FIFO: enough to drive replays in these tests."""

    name = "oldest-first"

    def decide(self, view):
        return Priority(-view.submit.astype(float))


def table(rows):
    """A canonical job table from (submit, duration, gpus, model) rows."""
    return make_trace(pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"]))


def one_env(cluster, rows, **kw) -> ClusterCore:
    spec = clusters.get(cluster)
    core = ClusterCore(spec, 1, **kw)
    core.load(np.array([0]), [make_workload(table(rows), spec)])
    return core


def test_unlimited_cluster_reproduces_every_duration():
    trace = synthetic(400, load=0.9, cluster="small", seed=3)
    huge = clusters.homogeneous(400, 8)
    res = simulate(trace, huge, OldestFirst())
    jobs = res.jobs
    assert len(jobs) == 400 and res.metrics["unfinished"] == 0
    np.testing.assert_allclose(jobs["jct"], trace["duration"], rtol=1e-9)
    assert (jobs["queueing_delay"] == 0).all()
    np.testing.assert_allclose(jobs["slowdown"], 1.0, rtol=1e-9)


def test_preemption_costs_exactly_the_restart_overhead_plus_the_wait():
    r = 45.0
    core = one_env("tiny", [(0.0, 1000.0, 4, "resnet50")], restart_overhead=r)
    core.apply(np.array([[4] + [0] * (core.S - 1)]), np.zeros((1, core.S), int))
    core.advance()  # nothing else happens: it runs to completion
    assert core.j_finish[0, 0] == pytest.approx(1000.0, abs=1e-9)

    core = one_env("tiny", [(0.0, 1000.0, 4, "resnet50"), (300.0, 50.0, 1, "a3c")], restart_overhead=r)
    n = np.zeros((1, core.S), int)
    t = np.zeros((1, core.S), int)
    n[0, 0] = 4
    core.apply(n, t)
    core.advance()  # arrival of job 1 at t=300
    assert core.clock[0] == 300.0
    core.apply(np.zeros_like(n), t)  # preempt job 0
    assert core.j_preempt[0, 0] == 1
    # job 0 waits while job 1 runs, then resumes
    core.apply(np.array([[0, 1] + [0] * (core.S - 2)]), t)
    core.advance()  # job 1 completes at 350
    assert core.clock[0] == pytest.approx(350.0)
    core.apply(np.array([[4] + [0] * (core.S - 1)]), t)  # resume job 0 at 350
    while not core.done[0]:
        core.advance()
    # 300 s done before, 700 s left, plus r of restart, plus the 50 s it waited
    assert core.j_finish[0, 0] == pytest.approx(350.0 + r + 700.0, abs=1e-6)
    assert core.j_restarts[0, 0] == 1


def test_unchanged_allocation_keeps_placement_and_pays_nothing():
    core = one_env("tiny", [(0.0, 1000.0, 2, "lm")], restart_overhead=30.0, round_length=100.0)
    n = np.zeros((1, core.S), int)
    n[0, 0] = 2
    t = np.zeros_like(n)
    core.apply(n, t)
    place = core.s_place[0, 0].copy()
    while not core.done[0]:
        core.advance()
        if not core.done[0]:
            core.apply(n, t)  # the same decision at every round boundary
            np.testing.assert_array_equal(core.s_place[0, 0], place)
    assert core.j_finish[0, 0] == pytest.approx(1000.0)
    assert core.j_restarts[0, 0] == 0


def test_heterogeneous_speed_follows_the_throughput_table():
    spec = clusters.from_counts("p100s", [("p100", 2, 4, 32, 256)])
    res = simulate(table([(0.0, 600.0, 1, "resnet50"), (0.0, 600.0, 4, "transformer")]), spec, OldestFirst())
    np.testing.assert_allclose(res.jobs["jct"], [600.0 / models.SPEED["resnet50"]["p100"],
                                                 600.0 / models.SPEED["transformer"]["p100"]], rtol=1e-9)


def test_fastest_free_type_is_chosen_per_model():
    # recommendation is faster on P100 than on V100 in Gavel's measurements; resnet50 the reverse
    spec = clusters.from_counts("mix", [("v100", 1, 1, 8, 64), ("p100", 1, 1, 8, 64)])
    res = simulate(table([(0.0, 100.0, 1, "recommendation"), (0.0, 100.0, 1, "resnet50")]), spec, OldestFirst())
    assert res.jobs["jct"][0] == pytest.approx(100.0 / models.SPEED["recommendation"]["p100"])
    assert res.jobs["jct"][1] == pytest.approx(100.0)


def test_spread_gang_pays_the_locality_factor():
    core = one_env("tiny", [(0.0, 100.0, 4, "lm")])
    take = np.array([[2, 2]])  # 4 GPUs over two 4-GPU nodes: more nodes than needed
    core.start(np.array([0]), np.array([0]), np.array([0]), np.array([4]), take=take)
    assert core.s_rate[0, 0] == pytest.approx(models.LOCALITY["lm"])
    core.advance()
    assert core.j_finish[0, 0] == pytest.approx(100.0 / models.LOCALITY["lm"])


def test_consolidate_first_places_on_one_node_when_it_can():
    core = one_env("small", [(0.0, 100.0, 1, "a3c"), (0.0, 100.0, 8, "lm"), (0.0, 100.0, 4, "lm")])
    n = np.zeros((1, core.S), int)
    n[0, :3] = [1, 8, 4]
    core.apply(n, np.zeros_like(n))
    nodes = (core.s_place[0, :3] > 0).sum(axis=1)
    np.testing.assert_array_equal(nodes, [1, 1, 1])
    # best fit: the 4-GPU job joins the node that already holds the 1-GPU job
    assert (core.s_place[0, 0] * core.s_place[0, 2]).sum() > 0


def test_elastic_job_follows_the_scaling_curve():
    spec = clusters.get("small")
    core = ClusterCore(spec, 1)
    wl = make_workload(table([(0.0, 1000.0, 2, "resnet18")]), spec, elastic_fraction=1.0)
    assert wl.min_gpus[0] == 1 and wl.max_gpus[0] == 4
    core.load(np.array([0]), [wl])
    n = np.zeros((1, core.S), int)
    n[0, 0] = 4
    core.apply(n, np.zeros_like(n))
    assert core.s_rate[0, 0] == pytest.approx(2.0 ** models.SCALING["resnet18"])


def test_allocation_errors_are_clear_and_leave_state_untouched():
    core = one_env("tiny", [(0.0, 100.0, 4, "lm"), (0.0, 100.0, 4, "lm"), (0.0, 100.0, 1, "a3c")])
    before = (core.free.copy(), core.s_status.copy(), core.s_n.copy())
    t = np.zeros((1, core.S), int)
    over = np.zeros((1, core.S), int)
    over[0, :3] = [4, 4, 1]
    with pytest.raises(AllocationError, match="allocated, cluster has 8"):
        core.apply(over, t)
    rigid = np.zeros((1, core.S), int)
    rigid[0, 0] = 2
    with pytest.raises(AllocationError, match="outside its bounds"):
        core.apply(rigid, t)
    for got, want in zip((core.free, core.s_status, core.s_n), before, strict=True):
        np.testing.assert_array_equal(got, want)
    counts = np.zeros((1, core.S, 2), int)
    counts[0, 0] = [2, 2]
    with pytest.raises(AllocationError, match="placed twice"):
        Allocation.from_counts(counts)
    ok = np.zeros((1, core.S), int)
    ok[0, 2] = 1
    core.apply(ok, t)
    with pytest.raises(AllocationError, match="already running"):
        core.start(np.array([0]), np.array([2]), np.array([0]), np.array([1]))
    core.advance()  # job 2 finishes at 100
    finished_slot = ok.astype(bool)
    assert core.s_status[0, 2] == 0 and core.j_finish[0, 2] == pytest.approx(100.0)
    with pytest.raises(AllocationError, match="finished or absent"):
        core.apply(finished_slot.astype(int), t)


def test_bad_core_configuration_is_rejected():
    with pytest.raises(ValueError, match="restart_overhead"):
        ClusterCore(clusters.tiny(), 1, restart_overhead=-1.0)
    with pytest.raises(ValueError, match="unknown GPU type"):
        clusters.from_counts("bad", [("h100x", 1, 8, 8, 8)])
    with pytest.raises(ValueError, match="largest GPU pool"):
        make_workload(table([(0.0, 10.0, 16, "lm")]), clusters.tiny())


def test_deadlocking_policy_raises_instead_of_hanging():
    class Never(Policy):
        name = "never"

        def decide(self, view):
            return None

    with pytest.raises(RuntimeError, match="deadlock"):
        simulate(table([(0.0, 10.0, 1, "lm")]), "tiny", Never())


def test_metrics_against_an_independent_computation():
    one_node = clusters.homogeneous(1, 8)  # no gang is ever spread, so no locality slowdown
    trace = synthetic(300, load=1.5, cluster=one_node, seed=11)
    res = simulate(trace, one_node, OldestFirst())
    j = res.jobs
    jct = (j["finish"] - j["submit"]).to_numpy()
    m = res.metrics
    assert m["avg_jct"] == pytest.approx(jct.mean())
    assert m["p99_jct"] == pytest.approx(np.percentile(jct, 99))
    assert m["makespan"] == pytest.approx(j["finish"].max())
    # allocated GPU-seconds of a non-preemptive replay on V100s = sum of duration x GPUs
    gpu_sec = (trace["duration"] * trace["num_gpus"]).sum()
    assert m["utilization"] == pytest.approx(gpu_sec / (8 * j["finish"].max()))
    assert m["avg_queueing_delay"] == pytest.approx((j["first_start"] - j["submit"]).mean())
    assert 0 < m["utilization"] <= 1
    assert m == summarize(j, 8)


def test_rho_is_one_for_a_job_alone_and_grows_with_contention():
    res = simulate(table([(0.0, 100.0, 8, "lm")]), "tiny", OldestFirst())
    assert res.jobs["rho"][0] == pytest.approx(1.0)
    # two 8-GPU jobs on 8 GPUs: the second waits 100 s; over its 200 s life n_avg = 1.5,
    # its 1/n share is 8/1.5 GPUs < 8, so T_id = 100 * 1.5 and rho = 200 / 150
    res = simulate(table([(0.0, 100.0, 8, "lm"), (0.0, 100.0, 8, "lm")]), "tiny", OldestFirst())
    assert res.jobs["rho"][1] == pytest.approx(200.0 / 150.0)
    assert res.metrics["unfair_fraction"] == pytest.approx(0.5)


def test_what_if_is_an_independent_copy_of_the_whole_state():
    from envs.core import WAITING
    from envs.policy import ClusterView

    spec = clusters.get("tiny")
    w = make_workload(synthetic(30, load=2.0, cluster=spec, seed=0), spec)
    core = ClusterCore(spec, 2, restart_overhead=30.0)
    core.load(np.array([0, 1]), [w, w])
    for _ in range(5):
        core.advance()
        core.greedy(np.where(core.s_status == WAITING, 1.0, -np.inf))
    before = {k: v.copy() for k, v in vars(core).items() if isinstance(v, np.ndarray)}
    twin = ClusterView(core).what_if()
    for name, value in vars(core).items():
        other = vars(twin)[name]
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, other, equal_nan=value.dtype.kind == "f"), name
            assert value.size == 0 or not np.shares_memory(value, other), name
        else:
            assert type(other) is type(value), name
    assert twin.cluster is core.cluster and twin.placer is core.placer  # read-only parts are shared
    for _ in range(10):
        twin.advance()
        twin.greedy(np.where(twin.s_status == WAITING, 1.0, -np.inf))
    assert not np.array_equal(twin.clock, core.clock)
    for name, value in before.items():
        assert np.array_equal(vars(core)[name], value, equal_nan=value.dtype.kind == "f"), name
