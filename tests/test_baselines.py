"""Classic baselines: each shows the behaviour its paper claims, in this simulator.

Claims on real data use windows of the Pollux Philly trace (skipped, with the reason, when
``../shared`` is absent): 300 consecutive jobs starting at a given submit time, arrivals rescaled
to offered load 2.0 on the 64-GPU ``small`` cluster (jobs larger than 16 GPUs dropped so that
windows stay comparable). The windows were picked to be contended (FIFO keeps GPUs busy half
the time or more and queues build) and quick to replay. Mechanism tests use hand-made traces.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from episodes import play_episodes

import baselines
import envs  # registers GpuCluster-v0
from baselines.adapter import _dense_rescale
from baselines.base import greedy_allocation
from envs import Allocation, ClusterCore, ClusterView, make_workload, simulate
from envs.core import WAITING
from traces import clusters, load_trace, make_trace, synthetic, window

LOAD = 2.0
CLUSTER = "small"


def table(rows):
    """A canonical job table from (submit, duration, gpus, model) rows."""
    return make_trace(pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"]))


ONE_GPU = clusters.homogeneous(1, 1, name="one-gpu")


@pytest.fixture(scope="module")
def philly(shared):
    path = shared("traces", "philly", "pollux_philly.csv.gz", what="the Pollux Philly trace")
    trace = load_trace(path)
    return trace[trace["num_gpus"] <= 16].reset_index(drop=True)


_CACHE: dict = {}


def replay(philly, start: float, name: str, **knobs):
    """Metrics of ``name`` on the Philly window at ``start`` (cached across tests)."""
    key = (start, name, tuple(sorted(knobs.items())))
    if key not in _CACHE:
        w = window(philly, start=start, num_jobs=300, load=LOAD, cluster=CLUSTER)
        _CACHE[key] = simulate(w, CLUSTER, baselines.get(name, **knobs)).metrics
    return _CACHE[key]


# ---------------------------------------------------------------------------------- registry
def test_registry_lists_every_policy_and_rejects_unknowns():
    assert set(baselines.names()) >= {"fifo", "sjf", "srtf", "las", "tiresias", "gandiva", "optimus", "themis"}
    for name in baselines.names():
        p = baselines.get(name)
        assert p.name == name
        assert isinstance(p, envs.Policy)
        doc = type(p).__module__
        module_doc = __import__(doc, fromlist=["_"]).__doc__
        for word in ("Paper", "Models", "Simplifies", "Knobs"):
            assert word in module_doc, f"{doc} docstring lacks {word!r}"
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get("nope")
    with pytest.raises(TypeError):
        baselines.get("las", round_lenght=60)
    assert baselines.get("tiresias", promote_knob=2).promote_knob == 2


@pytest.mark.parametrize("name", ["sjf", "srtf", "optimus", "themis"])
def test_oracle_policies_refuse_hidden_durations(name):
    assert baselines.get(name).needs_durations
    with pytest.raises(ValueError, match="needs job durations"):
        simulate(table([(0, 10, 1, "resnet50")]), "tiny", baselines.get(name), known_durations=False)


@pytest.mark.parametrize("name", ["fifo", "fjf", "sjf", "srtf", "las", "tiresias", "gandiva", "optimus", "themis"])
def test_every_policy_replays_a_synthetic_trace(name):
    trace = synthetic(150, load=1.5, cluster="tiny", seed=1, duration_range=(10, 86400))
    res = simulate(trace, "tiny", baselines.get(name), elastic_fraction=0.5 if name == "optimus" else 0.0)
    assert res.metrics["unfinished"] == 0
    assert (res.jobs["first_start"] >= res.jobs["submit"]).all()
    assert (res.jobs["finish"] > res.jobs["first_start"]).all()


# ---------------------------------------------------------------------------------- lowering
def random_core(seed: int, E: int = 3) -> ClusterCore:
    """A core in a random mid-run state: jobs of mixed sizes, some running."""
    rng = np.random.default_rng(seed)
    spec = clusters.get("small")
    core = ClusterCore(spec, E, round_length=300.0)
    loads = []
    for _ in range(E):
        n = int(rng.integers(20, 60))
        rows = [(float(i), float(rng.integers(100, 5000)), int(rng.choice([1, 1, 1, 2, 4, 8, 16])), "resnet50")
                for i in range(n)]
        loads.append(make_workload(table(rows), spec))
    core.load(np.arange(E), loads)
    while (core.s_status == WAITING).sum() > 10:
        core.serve(rng.random((E, core.S)), preempt=False)
        core.advance()
    return core


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backfill", [True, False])
@pytest.mark.parametrize("preempt", [True, False])
def test_fast_greedy_equals_the_core_greedy(seed, backfill, preempt):
    core = random_core(seed)
    view = ClusterView(core)
    rng = np.random.default_rng(seed + 100)
    scores = np.round(rng.random((core.E, core.S)) * 5)  # ties on purpose
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    n_core, t_core = core.greedy(scores, backfill=backfill, preempt=preempt)
    n_fast, t_fast = greedy_allocation(view, scores, backfill=backfill, preempt=preempt)
    assert (n_fast == n_core).all()
    assert (t_fast[n_fast > 0] == t_core[n_core > 0]).all()


@pytest.mark.parametrize("name", ["srtf", "las", "tiresias", "gandiva", "themis", "optimus"])
def test_lowered_decisions_replay_exactly_like_the_plain_ones(name):
    trace = synthetic(200, load=2.0, cluster="tiny", seed=7, duration_range=(10, 86400))
    out = []
    for fast in (True, False):
        policy = baselines.get(name)
        policy.fast = fast
        out.append(simulate(trace, "tiny", policy, elastic_fraction=0.5 if name == "optimus" else 0.0).jobs)
    for col in ("first_start", "finish", "preemptions"):
        np.testing.assert_allclose(out[0][col], out[1][col])


# ---------------------------------------------------------------------------------- claims on Philly
WINDOWS = (2.5e6, 5.5e6, 8.5e6)


@pytest.mark.parametrize("start", WINDOWS)
def test_srtf_sjf_fifo_order_average_jct(philly, start):
    """Known durations, heavy tails, high load: SRTF <= SJF <= FIFO in average JCT."""
    jct = {name: replay(philly, start, name)["avg_jct"] for name in ("fifo", "sjf", "srtf")}
    assert replay(philly, start, "fifo")["utilization"] > 0.45  # the window is contended
    assert jct["srtf"] <= jct["sjf"] <= jct["fifo"], jct


@pytest.mark.parametrize("start", WINDOWS)
def test_tiresias_without_durations_beats_fifo(philly, start):
    fifo = replay(philly, start, "fifo")["avg_jct"]
    tiresias = replay(philly, start, "tiresias")["avg_jct"]
    assert tiresias < 0.8 * fifo, (tiresias, fifo)


@pytest.mark.parametrize("start", (2.5e6, 3.5e6, 4.5e6))
def test_themis_has_lower_max_rho_than_tiresias_and_fifo(philly, start):
    rho = {name: replay(philly, start, name)["max_rho"] for name in ("fifo", "tiresias", "themis")}
    assert rho["themis"] < rho["tiresias"] and rho["themis"] < rho["fifo"], rho


@pytest.mark.parametrize("start", WINDOWS)
def test_gandiva_time_slicing_cuts_queueing_delay(philly, start):
    fifo = replay(philly, start, "fifo")
    gandiva = replay(philly, start, "gandiva")
    assert gandiva["avg_queueing_delay"] < 0.1 * fifo["avg_queueing_delay"]
    assert gandiva["preemptions"] > 0  # it got there by suspending and resuming jobs


# ---------------------------------------------------------------------------------- mechanisms
class Recording(baselines.Tiresias):
    """Tiresias that logs (clock, queue of job 0, queue of job 1, running job) at each decision."""

    def plan(self, view):
        decision = super().plan(view)
        q = self.queues(view)[0]
        job = view.job[0]
        queue = {int(j): int(x) for j, x in zip(job, q, strict=True) if j >= 0}
        running = [int(j) for j in job[view.running[0]]]
        self.log.append((float(view.clock[0]), queue.get(0), queue.get(1), running))
        return decision


def run_tiresias(promote_knob: float):
    """One GPU; job 0 (3000 s) from t=0, job 1 (100,000 s) from t=1500; one threshold at
    1000 GPU-s."""
    trace = table([(0, 3000, 1, "resnet50"), (1500, 100000, 1, "resnet50")])
    policy = Recording(thresholds=(1000.0,), promote_knob=promote_knob, round_length=300.0)
    policy.log = []
    res = simulate(trace, ONE_GPU, policy)
    return res.jobs, policy.log


def test_tiresias_demotes_after_the_threshold_and_preempts_for_a_new_job():
    jobs, log = run_tiresias(promote_knob=0.0)
    queue0 = {t: q for t, q, _, _ in log}
    assert all(q == 0 for t, q in queue0.items() if t < 1000)
    # service passes 1000 GPU-s at t=1000; demotion is seen by the next round boundary
    assert queue0[1200.0] == 1
    # job 1 arrives in Q0 and preempts job 0 (Q1) at once
    assert jobs["first_start"][1] == 1500.0
    assert jobs["preemptions"][0] == 1
    # no promotion: job 0 starves until job 1 is done
    assert jobs["finish"][0] > jobs["finish"][1]


def test_tiresias_promotes_a_starving_job():
    jobs, log = run_tiresias(promote_knob=2.0)
    # job 0 ran 1500 s, then waited; after 2 x 1500 s pending (t=4500) it is back in Q0 and runs
    promoted = [(t, q0, run) for t, q0, _q1, run in log if 1500 < t <= 4600 and q0 == 0]
    assert promoted and promoted[0][0] == pytest.approx(4500.0)
    assert jobs["finish"][0] == pytest.approx(4500 + 30 + 1500)  # restart overhead, then the rest
    assert jobs["finish"][0] < jobs["finish"][1]
    assert jobs["preemptions"][1] == 1


def test_las_serves_the_least_attained_job_at_the_next_round():
    trace = table([(0, 5000, 1, "resnet50"), (100, 1000, 1, "resnet50")])
    jobs = simulate(trace, ONE_GPU, baselines.get("las")).jobs
    assert jobs["first_start"][1] == 300.0  # not at arrival: LAS preempts at round boundaries
    assert jobs["preemptions"][0] >= 1
    fifo = simulate(trace, ONE_GPU, baselines.get("fifo")).jobs
    assert jobs["jct"].mean() < fifo["jct"].mean()


def test_gandiva_round_robins_jobs_that_exceed_the_gpus():
    trace = table([(0, 2000, 1, "resnet50"), (0, 2000, 1, "resnet50"), (0, 2000, 1, "resnet50")])
    gandiva = simulate(trace, ONE_GPU, baselines.get("gandiva", quantum=300.0)).jobs
    fifo = simulate(trace, ONE_GPU, baselines.get("fifo")).jobs
    assert list(gandiva["first_start"]) == [0.0, 300.0, 600.0]  # one quantum each, in turn
    assert list(fifo["first_start"]) == [0.0, 2000.0, 4000.0]
    assert gandiva["queueing_delay"].mean() < fifo["queueing_delay"].mean()
    assert (gandiva["preemptions"] > 0).all()


class OptimusLog(baselines.Optimus):
    def plan(self, view):
        decision = super().plan(view)
        if isinstance(decision, Allocation):
            n = {int(j): int(x) for j, x in zip(view.job[0], decision.n[0], strict=True) if j >= 0}
            self.log.append((float(view.clock[0]), n.get(1), n.get(2)))
        return decision


def test_optimus_gives_more_gpus_to_the_larger_marginal_speedup():
    """Two elastic jobs, same request (4, elastic 1-8) and work, on one 8-GPU node: ResNet-18
    (throughput ~ n^0.93) and LM (~ n^0.59). A rigid job holds 4 GPUs for the first 1000 s, so
    both elastic jobs are observed at two sizes; from then on the fitted model gives the
    better-scaling job more GPUs."""
    trace = table([(0, 1000, 4, "a3c"), (0, 40000, 4, "resnet18"), (0, 40000, 4, "lm")])
    policy = OptimusLog()
    policy.log = []
    simulate(trace, clusters.homogeneous(1, 8, name="one-node"), policy, elastic_fraction=1.0)
    assert policy.log[0][1:] == (2, 2)  # minimum 1 each, then the 2 free GPUs by (prior) gain
    n_resnet, n_lm = next((a, b) for t, a, b in policy.log if t > 1200 and a != b)
    assert n_resnet > n_lm
    w = np.array([0.5, 1.0, 2.0])
    fitted = policy.speed(np.array([0, 0, 0]), w), policy.speed(np.array([3, 3, 3]), w)
    assert fitted[0][2] / fitted[0][1] > fitted[1][2] / fitted[1][1]  # resnet18 scales better


def test_themis_rho_matches_the_simulator_metric_at_the_finish():
    """The rho Themis ranks by is the metric's rho (same T_id, same lifetime-average N)."""
    trace = table([(0, 600, 1, "resnet50"), (0, 600, 1, "resnet50"), (10, 300, 1, "resnet50")])
    policy = baselines.get("themis")
    seen = {}

    class Probe(type(policy)):
        def plan(self, view):
            decision = super().plan(view)
            rho = self.rho(view)
            for j, r in zip(view.job[0], rho[0], strict=True):
                if j >= 0:
                    seen[int(j)] = (float(view.clock[0]), float(r))
            return decision

    res = simulate(trace, ONE_GPU, Probe())
    # the last estimate of job 2 (the last to finish) was taken at the final event before its end
    t, rho = seen[2]
    finish = res.jobs["finish"][2]
    assert t < finish and rho == pytest.approx(res.jobs["rho"][2], rel=0.05)


# ---------------------------------------------------------------------------------- Gym adapter
def test_priority_rescale_keeps_order_and_ties():
    v = np.array([[5.0, -3.0, 5.0, 1e9, -np.inf, 0.0]])
    out = _dense_rescale(v, v > -np.inf, -np.inf)
    assert out.max() == 1.0 and out[0, :4].min() > -1.0
    assert out[0, 0] == out[0, 2] and out[0, 3] > out[0, 0] > out[0, 5] > out[0, 1]
    assert out[0, 4] == -np.inf


def run_vector(trace, policy, mode: str, *, num_envs: int, round_length: float, known: bool) -> list[pd.DataFrame]:
    """Per-job results of the first episode of each env of a vector env driven by ``policy``."""
    env = gym.make_vec("GpuCluster-v0", num_envs=num_envs, trace=trace, num_jobs=len(trace), load=None,
                       cluster="tiny", action_mode=mode, preemption=True, round_length=round_length,
                       restart_overhead=30.0, max_slots=len(trace), known_durations=known)
    return play_episodes(env, policy, num_envs)


@pytest.mark.parametrize(("name", "knobs", "mode"), [
    ("fifo", {}, "priority"),
    ("sjf", {}, "priority"),
    ("las", {}, "priority"),
    ("tiresias", {"preempt": "round"}, "priority"),
    ("gandiva", {}, "priority"),
    ("fifo", {}, "pick"),
    ("las", {}, "pick"),
    ("tiresias", {"preempt": "round"}, "pick"),
    ("gandiva", {}, "pick"),
])
def test_vector_env_and_simulate_make_the_same_decisions(name, knobs, mode):
    trace = synthetic(40, load=2.0, cluster="tiny", seed=11, duration_range=(10, 20000))
    sim_policy = baselines.get(name, **knobs)
    rl = sim_policy.round_length or 300.0
    known = sim_policy.needs_durations
    expected = simulate(trace, "tiny", sim_policy, round_length=rl, restart_overhead=30.0, known_durations=known).jobs
    assert expected["preemptions"].sum() > 0 or name in ("fifo", "sjf")
    got = run_vector(trace, baselines.get(name, **knobs), mode, num_envs=3, round_length=rl, known=known)
    for jobs in got:
        np.testing.assert_allclose(jobs["first_start"], expected["first_start"])
        np.testing.assert_allclose(jobs["finish"], expected["finish"])
        np.testing.assert_array_equal(jobs["preemptions"], expected["preemptions"])


def test_act_on_a_single_env_and_state_reset_between_episodes():
    env = gym.make("GpuCluster-v0", cluster="tiny", num_jobs=24, action_mode="pick", preemption=True)
    policy = baselines.get("tiresias")
    _obs, info = env.reset(seed=3)
    episodes = 0
    for _ in range(5000):
        a = baselines.act(policy, env)
        assert isinstance(a, int) and info["action_mask"][a]
        _obs, _r, term, trunc, info = env.step(a)
        if term or trunc:
            assert "episode_metrics" in info
            episodes += 1
            if episodes == 2:
                break
            _obs, info = env.reset()
    assert episodes == 2
    assert env.unwrapped.engine.invalid[0] == 0
    # the new episode's jobs reuse workload positions: their per-job state was cleared
    assert policy.jobs["queue"][0, :24].max() <= len(policy.thresholds)


def test_act_refuses_an_oracle_policy_when_durations_are_hidden():
    env = gym.make_vec("GpuCluster-v0", num_envs=2, cluster="tiny", num_jobs=16, action_mode="priority")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="needs job durations"):
        baselines.act(baselines.get("srtf"), env)


def test_vector_env_run_equals_single_env_runs():
    """Per-env state is kept per env: N envs stepped together by one policy object follow the
    trajectories of N single envs, each with its own policy, given the same seeds."""
    opts = dict(cluster="tiny", num_jobs=32, action_mode="priority", preemption=True, trace_seed=2)
    N = 3

    def first_episode_returns(make, seeds, policies):
        envs_ = make()
        singles = isinstance(envs_, list)
        returns = np.zeros(N)
        done = np.zeros(N, dtype=bool)
        if singles:
            for env, seed in zip(envs_, seeds, strict=True):
                env.reset(seed=seed)
        else:
            envs_.reset(seed=seeds[0])
        for _ in range(5000):
            if singles:
                for i, (env, pol) in enumerate(zip(envs_, policies, strict=True)):
                    if not done[i]:
                        _o, r, te, tr, _ = env.step(baselines.act(pol, env))
                        returns[i] += r
                        done[i] = te or tr
            else:
                _o, r, te, tr, _ = envs_.step(baselines.act(policies[0], envs_))
                returns += np.where(done, 0.0, r)
                done |= te | tr
            if done.all():
                return returns
        raise AssertionError("episodes did not end")

    vec = first_episode_returns(lambda: gym.make_vec("GpuCluster-v0", num_envs=N, **opts), [0, 1, 2],
                                [baselines.get("tiresias", preempt="round")])
    single = first_episode_returns(lambda: [gym.make("GpuCluster-v0", **opts) for _ in range(N)], [0, 1, 2],
                                   [baselines.get("tiresias", preempt="round") for _ in range(N)])
    np.testing.assert_allclose(vec, single)
    assert len(set(np.round(vec, 6))) > 1  # the envs really ran different windows
