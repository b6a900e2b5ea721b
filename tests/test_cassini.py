"""CASSINI: network-aware placement and time shifts over a host scheduler (Themis).

The claim (CASSINI, NSDI'24): when communication-heavy jobs must span nodes, CASSINI lowers the average
iteration time and the average JCT against consolidate-first placement under the same host.
Mechanism checks: the policy's network model against the core's rates, its placement search
against brute force on tiny clusters, its affinity-graph loop detection against an independent
union-find, and it degrades to its host without a network model.
"""

from __future__ import annotations

import copy
import itertools

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import baselines
import envs  # noqa: F401  (registers GpuCluster-v0)
from baselines.cassini import Cassini, affinity, compatibility, consistent_shifts, iteration_factor
from envs import ClusterCore, ClusterView, make_workload, metrics, simulate
from envs.placement import consolidate_first
from envs.policy import execute
from traces import clusters, make_trace, synthetic

HEAVY = ("lm", "resnet18", "transformer")  # comm_fraction 0.54, 0.32, 0.30


def table(rows):
    return make_trace(pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"]))


def spanning_workload(seed: int, n: int = 40) -> pd.DataFrame:
    """Communication-heavy gangs of 6, 8 and 10 GPUs (they must span 4-GPU nodes) mixed with
    small ResNet-50 jobs that fragment the nodes; Poisson arrivals, 0.5-2 h jobs."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0.0
    for _ in range(n):
        if rng.random() < 0.6:
            rows.append((t, float(rng.uniform(1800, 7200)), int(rng.choice([6, 8, 10])), str(rng.choice(HEAVY))))
        else:
            rows.append((t, float(rng.uniform(1800, 7200)), int(rng.choice([1, 2, 3])), "resnet50"))
        t += rng.exponential(300.0)
    return table(rows)


def replay(trace, spec, policy):
    """Replay with the network model (as :func:`envs.simulate`), measuring the time-weighted mean
    iteration time of running spanning jobs relative to their time alone on the same nodes
    (rate without link contention / rate), outside restarts. Returns (metrics, iteration)."""
    wl = make_workload(trace, spec)
    core = ClusterCore(spec, 1, round_length=policy.round_length, network=True)
    view = ClusterView(core)
    policy.reset(view)
    core.load(np.array([0]), [wl])
    num = den = 0.0
    while not core.done[0]:
        execute(core, policy.decide(view))
        t_next = core.next_event()[0]  # brings the coupled rates up to date
        assert np.isfinite(t_next)
        live = (core.s_status == 2) & (core.s_nodes > 1) & (core.s_restart_until <= core.clock[:, None])
        if live.any():
            alone = view.rate_at(core.s_n, core.s_t, nodes=core.s_nodes)
            slow = np.where(live, alone / np.where(live, core.s_rate, 1.0), 0.0)
            dt = t_next - core.clock[0]
            num += slow.sum() * dt
            den += live.sum() * dt
        core.advance()
    jobs = metrics.from_core(core, 0, wl.job_id)
    return metrics.summarize(jobs, spec.num_gpus), num / den


# ---------------------------------------------------------------------------------- the claim
def test_cassini_lowers_iteration_time_and_jct_against_consolidate_first():
    spec = clusters.homogeneous(8, 4, name="8x4")
    rows = []
    for seed in range(5):
        trace = spanning_workload(seed)
        host, it_host = replay(trace, spec, baselines.get("themis"))
        cas, it_cas = replay(trace, spec, baselines.get("cassini"))
        assert host["unfinished"] == 0 and cas["unfinished"] == 0
        rows.append((host["avg_jct"], cas["avg_jct"], it_host, it_cas))
        print(f"seed {seed}: avg JCT themis {host['avg_jct']:.0f} s, cassini {cas['avg_jct']:.0f} s "
              f"({cas['avg_jct'] / host['avg_jct']:.3f}); iteration time x{it_host:.3f} vs x{it_cas:.3f}")
    a = np.array(rows)
    jct_ratio = a[:, 1].mean() / a[:, 0].mean()
    print(f"mean over seeds: avg JCT themis {a[:, 0].mean():.0f} s, cassini {a[:, 1].mean():.0f} s "
          f"(ratio {jct_ratio:.3f}); iteration time x{a[:, 2].mean():.3f} vs x{a[:, 3].mean():.3f}")
    assert (a[:, 3] < a[:, 2]).sum() >= 4  # shorter iterations in (nearly) every run
    assert a[:, 3].mean() <= a[:, 2].mean() - 0.05
    assert jct_ratio <= 0.95


# ---------------------------------------------------------------------------------- the model
def test_compatibility_score():
    np.testing.assert_allclose(compatibility([0.0, 0.62, 1.0, 1.08, 1.5, 2.5]), [1, 1, 1, 0.92, 0.5, 0])


def random_spanning_core(seed: int, shift_p: float = 0.5, waiting: bool = False):
    """A 6 x 4 core with random spanning gangs (and 1-GPU fillers) placed explicitly and random
    shift flags; with ``waiting``, one more comm-heavy gang waits that no single node can hold
    (the last job of the workload). Returns (core, on, phi, shift)."""
    rng = np.random.default_rng(seed)
    spec = clusters.homogeneous(6, 4)
    free = np.full(6, 4)
    rows, places = [], []
    for _ in range(int(rng.integers(2, 6))):
        if (free > 0).sum() < 2:
            break
        nodes = rng.choice(np.flatnonzero(free > 0), size=min(int(rng.integers(2, 4)), int((free > 0).sum())), replace=False)
        take = np.zeros(6, dtype=np.int64)
        for nd in nodes:
            take[nd] = int(rng.integers(1, min(2, free[nd]) + 1))
        free -= take
        rows.append((0.0, 1e5, int(take.sum()), str(rng.choice(HEAVY))))
        places.append(take)
    for nd in np.flatnonzero(free > 0):
        if rng.random() < 0.4:
            take = np.zeros(6, dtype=np.int64)
            take[nd] = 1
            free -= take
            rows.append((0.0, 1e5, 1, "resnet50"))
            places.append(take)
    if waiting and free.sum() > free.max():
        size = int(rng.integers(free.max() + 1, free.sum() + 1))
        rows.append((0.0, 1e5, size, str(rng.choice(HEAVY))))
    core = ClusterCore(spec, 1, network=True)
    core.load(np.array([0]), [make_workload(table(rows), spec)])
    S = core.S
    n = np.zeros((1, S), dtype=np.int64)
    place = np.zeros((1, S, 6), dtype=np.int64)
    n[0, : len(places)] = [r[2] for r in rows[: len(places)]]
    place[0, : len(places)] = places
    shift = rng.random((1, S)) < shift_p
    core.apply(n, np.zeros_like(n), place=place, shift=shift)
    on = (core.s_place > 0) & (core.s_nodes > 1)[:, :, None]
    phi = np.where(on.any(axis=2), core.comm[core.s_model], 0.0)
    return core, on, phi, shift & on.any(axis=2)


@pytest.mark.parametrize("seed", range(12))
def test_iteration_factor_matches_the_core_rates(seed):
    core, on, phi, shift = random_spanning_core(seed)
    view = ClusterView(core)
    run = core.s_status == 2
    measured = np.where(run, view.rate_at(core.s_n, core.s_t, nodes=core.s_nodes) / np.where(run, view.rate, 1.0), 1.0)
    np.testing.assert_allclose(iteration_factor(on, phi, shift), measured, rtol=1e-12)


def loops_by_union_find(on_env: np.ndarray) -> np.ndarray:
    """Independent check: per job, whether its component of the job-link graph (links with the
    same job set merged) has a cycle, by union-find over the edges."""
    S, N = on_env.shape
    parent = list(range(S + N))
    cyc = [False] * (S + N)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    seen = set()
    for nd in range(N):
        jobs = frozenset(np.flatnonzero(on_env[:, nd]).tolist())
        if not jobs or jobs in seen:
            continue
        seen.add(jobs)
        for s in jobs:
            a, b = root(s), root(S + nd)
            if a == b:
                cyc[a] = True
            else:
                parent[a] = b
                cyc[b] = cyc[b] or cyc[a]
    span = on_env.any(axis=1)
    return np.array([bool(span[s] and cyc[root(s)]) for s in range(S)])


def test_affinity_loops_match_union_find():
    rng = np.random.default_rng(0)
    E, S, N = 300, 6, 7
    on = np.zeros((E, S, N), dtype=bool)
    for e in range(E):
        for s in range(S):
            if rng.random() < 0.6:
                on[e, s, rng.choice(N, int(rng.integers(2, 4)), replace=False)] = True
    job = np.tile(np.arange(S), (E, 1))
    got = affinity(on, job)["job_loop"]
    want = np.array([loops_by_union_find(on[e]) for e in range(E)])
    assert got.any() and not got.all()
    np.testing.assert_array_equal(got, want)
    # consistent shifts: the shifted jobs and their aligned links form no loop; loop-free jobs keep theirs
    phi = rng.choice([0.54, 0.32, 0.30], size=(E, S))
    sh = consistent_shifts(on, phi, job)
    aligned = ~(on & ~sh[:, :, None]).any(axis=1)
    g = on & sh[:, :, None] & aligned[:, None, :]
    assert not any(loops_by_union_find(g[e]).any() for e in range(E))
    assert (sh >= (on.any(axis=2) & ~want)).all()


def test_shifts_on_a_chain_a_triangle_and_twin_links():
    def on_of(jobs_nodes, N=4):
        on = np.zeros((1, len(jobs_nodes), N), dtype=bool)
        for s, nodes in enumerate(jobs_nodes):
            on[0, s, nodes] = True
        return on

    phi = np.array([[0.54, 0.32, 0.30]])
    job = np.array([[0, 1, 2]])
    chain = on_of([[0, 1], [1, 2], [2, 3]])
    assert consistent_shifts(chain, phi, job).all()
    triangle = on_of([[0, 1], [1, 2], [2, 0]])
    sh = consistent_shifts(triangle, phi, job)
    assert sh.sum() == 2 and not sh[0, 2]  # one shift given up: the smallest phi of the equals
    twins = on_of([[0, 1], [0, 1], [2, 3]])  # two jobs on the same two links: one constraint
    assert consistent_shifts(twins, phi, job).all()


# ---------------------------------------------------------------------------------- placement
def tiny_states(seed: int):
    """:func:`random_spanning_core` states with a waiting gang that must span (no node holds it,
    all nodes together do)."""
    for k in range(1000):
        core, *_ = random_spanning_core(1000 * seed + k, shift_p=1.0, waiting=True)
        if (core.s_status[0] == 1).sum() == 1 and (core.free[0] > 0).sum() >= 3:
            yield core, int(core.n_jobs[0]) - 1


def total_iteration(core, shift_all: bool) -> float:
    """Sum over running spanning jobs of iteration time relative to alone, with every spanning
    job time-shifted (or none), as the core's rates give it."""
    view = ClusterView(core)
    spans = (core.s_status == 2) & (core.s_nodes > 1)
    core.apply(core.s_n, core.s_t, shift=spans if shift_all else np.zeros_like(spans))
    alone = view.rate_at(core.s_n, core.s_t, nodes=core.s_nodes)
    return float(np.where(spans, alone / np.where(spans, view.rate, 1.0), 0.0).sum())


def placement_costs(core, slot: int, shifts: bool) -> dict:
    """Brute force: every set of the fewest nodes that can hold the waiting gang (filled most
    free first, as the policy fills a set) -> the total iteration time it leads to."""
    free = core.free[0]
    size = int(core.s_gpus[0, slot])
    k_min = int((np.cumsum(np.sort(free)[::-1]) >= size).argmax()) + 1
    out = {}
    for nodes in itertools.combinations(range(core.N), k_min):
        f = free[list(nodes)]
        if (f == 0).any() or f.sum() < size:
            continue
        take = np.zeros(core.N, dtype=np.int64)
        left = size
        for nd in sorted(nodes, key=lambda x: -free[x]):
            take[nd] = min(left, free[nd])
            left -= take[nd]
        out[nodes] = cost_of(core, slot, take, shifts)
    return out


def cost_of(core, slot: int, take: np.ndarray, shifts: bool) -> float:
    c = copy.deepcopy(core)
    n = c.s_n.copy()
    n[0, slot] = take.sum()
    place = np.zeros((1, c.S, c.N), dtype=np.int64)
    place[0, slot] = take
    c.apply(n, c.s_t, place=place)
    return total_iteration(c, shifts)


@pytest.mark.parametrize("shifts", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_placement_search_matches_brute_force(seed, shifts):
    for core, j in tiny_states(seed):  # the first state where the choice of nodes matters
        slot = int(np.flatnonzero(core.s_job[0] == j)[0])
        costs = placement_costs(core, slot, shifts)
        if max(costs.values()) - min(costs.values()) > 1e-3:
            break
    view = ClusterView(core)
    policy = Cassini(host="fjf", shifts=shifts, consistent=False, avoid_loops=False)
    policy.reset(view)
    decision = policy.plan(view)
    size = int(core.s_gpus[0, slot])
    chosen = decision.place[0, slot]
    assert chosen.sum() == size and decision.n[0, slot] == size
    assert tuple(np.flatnonzero(chosen)) in costs  # the fewest nodes
    got = cost_of(core, slot, chosen, shifts)
    free = core.free[0]
    consolidate = cost_of(core, slot, consolidate_first(free[None], core.node_type, np.array([0]), np.array([size]))[0], shifts)
    print(f"seed {seed} shifts={shifts}: {len(costs)} node sets, total iteration time: cassini {got:.4f}, "
          f"brute-force best {min(costs.values()):.4f}, worst {max(costs.values()):.4f}, consolidate-first {consolidate:.4f}")
    assert got == pytest.approx(min(costs.values()), abs=1e-9)


def test_a_second_lm_gang_avoids_the_links_of_the_first():
    """4 x 4-GPU nodes; an LM gang runs on 2 + 2 GPUs of nodes 0 and 1, 2-GPU jobs fill half of
    nodes 2 and 3. A second 4-GPU LM gang must span two nodes: consolidate-first takes nodes 0
    and 1 (ties to the lowest index), sharing both links (L = 1.08); CASSINI takes 2 and 3."""
    spec = clusters.homogeneous(4, 4)
    trace = table([(0, 1e5, 4, "lm"), (0, 1e5, 2, "resnet50"), (0, 1e5, 2, "resnet50"), (0, 1e5, 4, "lm")])
    core = ClusterCore(spec, 1, network=True)
    core.load(np.array([0]), [make_workload(trace, spec)])
    n = np.zeros((1, core.S), dtype=np.int64)
    n[0, :3] = [4, 2, 2]
    place = np.zeros((1, core.S, 4), dtype=np.int64)
    place[0, 0] = [2, 2, 0, 0]
    place[0, 1] = [0, 0, 2, 0]
    place[0, 2] = [0, 0, 0, 2]
    core.apply(n, np.zeros_like(n), place=place)
    view = ClusterView(core)
    consolidate = consolidate_first(core.free, core.node_type, np.array([0]), np.array([4]))[0]
    assert consolidate.tolist() == [2, 2, 0, 0]
    policy = Cassini(host="fjf")
    policy.reset(view)
    decision = policy.plan(view)
    assert decision.place[0, 3].tolist() == [0, 0, 2, 2]
    assert (decision.place[0, :3] == 0).all() and decision.shift[0, [0, 3]].all()
    execute(core, decision)
    assert core.s_place[0, 0].tolist() == [2, 2, 0, 0] and core.j_restarts[0].sum() == 0  # kept in place
    np.testing.assert_allclose(view.rate[0, [0, 3]], view.rate_at(4, 0, nodes=2)[0, [0, 3]])  # no contention


# ---------------------------------------------------------------------------------- integration
def test_without_a_network_model_cassini_is_its_host():
    trace = synthetic(60, load=1.5, cluster="tiny", seed=3, duration_range=(10, 20000))
    a = simulate(trace, "tiny", baselines.get("cassini", host="tiresias")).jobs
    b = simulate(trace, "tiny", baselines.get("tiresias")).jobs
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("host", ["themis", "tiresias", "las", "fifo"])
def test_replays_with_the_network_model_and_several_gpu_types(host):
    rng = np.random.default_rng(4)
    trace = synthetic(60, load=1.5, cluster="gavel", seed=4, duration_range=(60, 20000))
    trace["model"] = [str(rng.choice(HEAVY)) if g > 1 else "resnet50" for g in trace["num_gpus"]]
    res = simulate(trace, "gavel", Cassini(host=host), network=True)
    assert res.metrics["unfinished"] == 0
    assert (res.jobs["finish"] > res.jobs["first_start"]).all()


@pytest.mark.parametrize("network", [False, True])
def test_vector_env_smoke(network):
    env = gym.make_vec("GpuCluster-v0", num_envs=3, cluster="tiny", num_jobs=16, action_mode="pick",
                       preemption=True, known_durations=True, network=network)
    policy = baselines.get("cassini")
    env.reset(seed=0)
    ended = np.zeros(3, dtype=bool)
    for _ in range(3000):
        _obs, _r, term, trunc, _info = env.step(baselines.act(policy, env))
        ended |= term | trunc
        if ended.all():
            break
    env.close()
    assert ended.all()


def test_bad_knobs_raise():
    for kwargs in ({"host": "nope"}, {"host": "cassini"}, {"pool": 0}, {"max_candidates": 0}, {"pool": 2.5},
                   {"shifts": "yes"}, {"host": baselines.get("las"), "host_knobs": {"round_length": 60}}, {"host": 3}):
        with pytest.raises(ValueError):
            Cassini(**kwargs)
    c = Cassini(host="tiresias", host_knobs={"promote_knob": 2})
    assert c.host.promote_knob == 2 and not c.needs_durations and c.round_length == 300.0
    assert Cassini().needs_durations  # Themis needs them
    assert c.knobs()["host"] == "tiresias"
