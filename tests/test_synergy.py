"""Synergy (baselines/synergy.py): CPU- and memory-aware allocation beside LAS GPU admission.

The claim (Synergy, OSDI'22: up to 3.4x lower average JCT than GPU-proportional CPU allocation)
is checked on a CPU-constrained cluster shaped like Synergy's servers (8 GPUs, 24 CPUs, 500 GB:
3 CPUs and 62.5 GB per GPU) with a job mix where CPU-hungry models (ResNet-18, A3C, CycleGAN)
are common and language models (Transformer, LM) present. The planner is checked against a
scalar re-implementation of TUNE/GREEDY on random instances, and its invariant (no job below its
GPU-proportional share unless its ideal demand is below it) over whole runs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import baselines
from baselines.synergy import IDEAL_CPU, IDEAL_MEM, Synergy, job_fair, plan_resources
from envs import ClusterCore, ClusterView, make_workload, simulate
from envs.policy import execute
from leaderboard import paper_workloads
from leaderboard.paper_workloads import SYNERGY_MIX, SYNERGY_PROXIES, synergy_cluster, synergy_trace
from traces import clusters, make_trace, models

SPEC = clusters.homogeneous(4, 8, cpus=24, mem_gb=500, name="synergy-4x8")  # Synergy's server shape


def cpu_heavy_trace(num_jobs: int, load: float, seed: int) -> pd.DataFrame:
    """The CPU-heavy window (:func:`leaderboard.paper_workloads.cpu_heavy_trace`) on :data:`SPEC`."""
    return paper_workloads.cpu_heavy_trace(num_jobs, load, seed, SPEC)


def table(rows):
    return make_trace(pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"]))


class Recording(Synergy):
    """Synergy that checks, at every decision, what the core granted to every running job."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.violations = self.overdrawn = self.short = self.checked = self.above_fair = 0

    def decide(self, view):
        run = view.running
        fair_c = job_fair(view.placement, view.node_cpus / view.node_capacity)
        fair_m = job_fair(view.placement, view.node_mem / view.node_capacity)
        floor_c = np.minimum(IDEAL_CPU[view.model], fair_c)
        floor_m = np.minimum(IDEAL_MEM[view.model], fair_m)
        self.violations += int((run & ((view.cpus < floor_c - 1e-6) | (view.mem < floor_m - 1e-6))).sum())
        self.overdrawn += int((view.free_cpus < -1e-6).sum() + (view.free_mem < -1e-6).sum())
        self.checked += int(run.sum())
        self.above_fair += int((run & (view.cpus > fair_c + 1e-6)).sum())
        if self.jobs is not None and self.mode != "proportional":
            asked = self.jobs.gather("cpu_ask", view)
            self.short += int((run & (view.cpus < asked - 1e-6)).sum())  # the core granted less than asked
        return super().decide(view)


# ------------------------------------------------------------------------------- the claim
@pytest.mark.parametrize("seed", [0, 1])
def test_tune_lowers_average_jct_against_gpu_proportional_allocation(seed):
    trace = cpu_heavy_trace(100, load=1.0, seed=seed)
    res = {}
    policies = {"tune": Recording(mode="tune"), "proportional": Recording(mode="proportional"),
                "greedy": Recording(mode="greedy")}
    for name, policy in policies.items():
        res[name] = simulate(trace, SPEC, policy, resources=True).metrics
        assert res[name]["unfinished"] == 0
    jct = {k: v["avg_jct"] for k, v in res.items()}
    ratio = jct["proportional"] / jct["tune"]
    print(f"seed {seed}: avg JCT proportional {jct['proportional']:.0f} s, TUNE {jct['tune']:.0f} s "
          f"({ratio:.2f}x), GREEDY {jct['greedy']:.0f} s; queueing delay proportional "
          f"{res['proportional']['avg_queueing_delay']:.0f} s, TUNE {res['tune']['avg_queueing_delay']:.0f} s")
    assert ratio > 1.2, jct  # measured 1.42x and 1.36x
    tune, prop = policies["tune"], policies["proportional"]
    # the invariant over the whole run, and the core granted exactly what TUNE planned
    assert tune.checked > 1000 and tune.violations == 0 and tune.overdrawn == 0 and tune.short == 0
    assert tune.above_fair > 0.2 * tune.checked  # TUNE really gave CPU-hungry jobs more than fair
    assert prop.above_fair == 0 and prop.violations == 0
    assert policies["greedy"].violations == 0 and policies["greedy"].overdrawn == 0


def test_tune_lowers_average_jct_in_the_papers_setting_at_small_scale():
    """Synergy's own setting scaled down: its server shape and its 34/33/33% image/language/speech
    job mix (:func:`leaderboard.paper_workloads.synergy_trace`) on 4 servers, 100 jobs at load 1.0.
    Direction holds on every seed; the magnitude (measured 1.29x, 1.23x) stays far below the
    paper's "up to 3.4x" (``docs/magnitude_gaps.md``: with 3 CPUs per GPU a full cluster gains
    at most ~1.2x throughput from re-dividing CPUs in this model)."""
    spec = synergy_cluster(4)
    ratios = []
    for seed in (0, 1):
        trace = synergy_trace(100, 1.0, seed, cluster=spec)
        jct = {mode: simulate(trace, spec, baselines.get("synergy", mode=mode), resources=True).metrics["avg_jct"]
               for mode in ("proportional", "tune")}
        ratios.append(jct["proportional"] / jct["tune"])
    print(f"proportional / TUNE average JCT: {ratios}")
    assert min(ratios) > 1.1 and np.mean(ratios) > 1.2


def test_synergy_trace_follows_the_papers_job_mix():
    """Task split 34/33/33%, models uniform within a task, proxies that scale for multi-GPU jobs."""
    spec = synergy_cluster(4)
    tr = synergy_trace(4000, 1.0, 3, cluster=spec)
    names = pd.Series(tr.attrs["synergy_model"])
    task = names.map({m: t for t, (_p, ms) in SYNERGY_MIX.items() for m in ms})
    for t, (p, ms) in SYNERGY_MIX.items():
        assert (task == t).mean() == pytest.approx(p, abs=0.03)
        share = names[task == t].value_counts(normalize=True)
        np.testing.assert_allclose(share.reindex(list(ms)).to_numpy(), 1 / len(ms), atol=0.05)
    multi = tr["num_gpus"].to_numpy() > 1
    proxy = np.array([SYNERGY_PROXIES[n][int(m)] for n, m in zip(names, multi, strict=True)])
    assert (tr["model"].to_numpy() == proxy).all()
    assert set(tr["model"][multi]) <= set(models.MULTI_GPU_MODELS)
    # each proxy is the simulator's model nearest in ideal CPUs per GPU among those that fit
    assert models.CPU_PROFILE[SYNERGY_PROXIES["alexnet"][0]][1] == 12.0
    assert models.CPU_PROFILE[SYNERGY_PROXIES["mobilenet"][0]][1:] == (6.0, 1.55)
    assert all(models.CPU_PROFILE[SYNERGY_PROXIES[m][0]][2] == 1.0 for m in SYNERGY_MIX["language"][1])


def test_a_spread_gang_is_consolidated_at_the_next_round():
    """Two servers of 4 GPUs: two 3-GPU jobs take one server each, so a 2-GPU LM job arriving at
    t = 10 must spread over both (LM runs at 0.46x spread). The short 3-GPU job ends at ~87 s;
    at the round boundary (300 s) the LM gang moves onto the freed server (a 30 s restart) and
    runs at full speed: it finishes at 300 + 30 + (3000 - 0.46 x 290) s, not at 10 + 3000 / 0.46
    s as when kept spread for its whole run."""
    spec = clusters.homogeneous(2, 4, cpus=12, mem_gb=250, name="two-servers")
    trace = table([(0, 100, 3, "resnet50"), (0, 100_000, 3, "resnet50"), (10, 3000, 2, "lm")])
    for mode in ("tune", "proportional"):
        jobs = simulate(trace, spec, baselines.get("synergy", mode=mode), resources=True, restart_overhead=30.0).jobs
        spread = models.LOCALITY["lm"]
        assert jobs["finish"][2] == pytest.approx(300 + 30 + 3000 - spread * 290, rel=1e-6), mode
        assert jobs["restarts"][2] == 1


def test_without_the_resource_model_every_mode_is_its_host_policy():
    trace = cpu_heavy_trace(60, load=1.5, seed=3)
    las = simulate(trace, SPEC, baselines.get("las")).jobs
    for name in ("synergy", "synergy_greedy", "synergy_proportional"):
        jobs = simulate(trace, SPEC, baselines.get(name)).jobs
        np.testing.assert_allclose(jobs["finish"], las["finish"])


def test_proportional_twin_grants_the_gpu_proportional_share():
    trace = table([(0, 1000, 1, "resnet18"), (0, 1000, 2, "transformer"), (0, 1000, 1, "a3c")])
    spec = clusters.homogeneous(1, 8, cpus=24, mem_gb=500)
    prop = simulate(trace, spec, baselines.get("synergy_proportional"), resources=True).jobs
    np.testing.assert_allclose(prop["finish"], [1000, 1000, 1000])  # speed 1 at 3 CPUs per GPU
    tune = simulate(trace, spec, baselines.get("synergy"), resources=True).jobs
    # TUNE: 9 CPUs to ResNet-18 (2.4x), 1 per GPU to the Transformer, 12 to A3C (2.9x): 23 of 24
    np.testing.assert_allclose(tune["finish"], [1000 / 2.4, 1000, 1000 / 2.9])


# ------------------------------------------------------------------------------- the planner
NODE = dict(node_type=np.zeros(1, dtype=np.int64), node_cap=np.array([8]), node_cpu=np.array([24.0]),
            node_mem=np.array([500.0]))


def plan_one_node(mode, names, gpus):
    """Plan jobs (in serving order) on one empty Synergy server."""
    S = len(names)
    m = np.array([[models.model_index(x) for x in names]])
    g = np.array([gpus])
    return plan_resources(mode, np.arange(S)[None, :], np.array([S]), np.zeros((1, S), dtype=bool), g,
                          np.zeros_like(g), m, np.arange(S)[None, :], np.zeros((1, S, 1), dtype=np.int64), **NODE)


def test_tune_ideal_then_fair_then_shrinks_peers_by_hand():
    # A: ResNet-18 x2 at its ideal 9 (18 CPUs); B: Transformer x2 at 1 (2); C: A3C wants 12 but 4
    # are left: its fair 3; D: ResNet-18 finds 1 CPU: A (above fair) shrinks to 3, D gets 3.
    _P, cpus, mem, skipped = plan_one_node("tune", ["resnet18", "transformer", "a3c", "resnet18"], [2, 2, 1, 1])
    np.testing.assert_allclose(cpus[0], [3.0, 1.0, 3.0, 3.0])
    np.testing.assert_allclose(mem[0], [62.5, 20.8, 20.8, 62.5])
    assert not skipped.any()
    # GREEDY: C and D do not fit at their ideal demands and are skipped
    _P, cpus, _mem, skipped = plan_one_node("greedy", ["resnet18", "transformer", "a3c", "resnet18"], [2, 2, 1, 1])
    assert skipped[0].tolist() == [False, False, True, True]
    np.testing.assert_allclose(cpus[0, :2], [9.0, 1.0])
    _P, cpus, _mem, _s = plan_one_node("proportional", ["resnet18", "transformer", "a3c", "resnet18"], [2, 2, 1, 1])
    np.testing.assert_allclose(cpus[0], 3.0)
    # an ideal demand larger than a server is capped at the server (8 GPUs x 9 > 24 CPUs)
    _P, cpus, _mem, _s = plan_one_node("tune", ["resnet18"], [8])
    np.testing.assert_allclose(cpus[0], [3.0])


def reference_plan(mode, jobs, node_cap, node_cpu, node_mem, node_type):
    """Scalar TUNE / GREEDY / proportional, written from the paper's description: jobs in serving
    order; ideal demand (capped at a server) on the fullest server with room; else the fair share
    (``min(ideal, fair)``) likewise; else shrink peers above their fair share on the fullest
    server with free GPUs (single-server jobs first, most CPUs per GPU first) and take the fair
    share. Kept jobs stay where they are; gangs too big for one server spread emptiest-first.
    Shrinking takes peers in the order of Synergy's ``_reallocate_peer`` (fewest servers, most
    CPUs per GPU, most memory per GPU) until the need is covered."""
    N = len(node_cap)
    fair_c = [node_cpu[n] / node_cap[n] for n in range(N)]
    fair_m = [node_mem[n] / node_cap[n] for n in range(N)]
    gfree = list(node_cap)
    for jb in jobs:
        if jb["kept"]:
            for n in range(N):
                gfree[n] -= jb["place"][n]
    cfree, mfree = list(map(float, node_cpu)), list(map(float, node_mem))
    placed = []  # dicts: place, c, m, fc, fm, job
    out = {}
    for jb in jobs:
        g, t, mdl = jb["g"], jb["t"], jb["model"]
        typed = [n for n in range(N) if node_type[n] == t]
        ideal_c, ideal_m = IDEAL_CPU[mdl], IDEAL_MEM[mdl]

        def levels(place, ideal_c=ideal_c, ideal_m=ideal_m):
            on = [n for n in range(N) if place[n] > 0]
            fc, fm = min(fair_c[n] for n in on), min(fair_m[n] for n in on)
            if mode == "proportional":
                return [(fc, fm), (fc, fm)], fc, fm
            ic = min(ideal_c, min(node_cpu[n] / place[n] for n in on))
            im = min(ideal_m, min(node_mem[n] / place[n] for n in on))
            return [(ic, im), (min(ic, fc), min(im, fm))], fc, fm

        def fits(place, c, m):
            return all(place[n] * c <= cfree[n] + 1e-6 and place[n] * m <= mfree[n] + 1e-6 for n in range(N))

        choice = None
        if jb["kept"] or max(gfree[n] for n in typed) < g:
            if jb["kept"]:
                place = list(jb["place"])
            else:  # spread: fewest nodes, emptiest first (ties to the lower index)
                place, left = [0] * N, g
                for n in sorted(typed, key=lambda n: -gfree[n]):
                    take = min(left, gfree[n])
                    place[n], left = take, left - take
            lv = levels(place)[0]
            for k, (c, m) in enumerate(lv):
                if fits(place, c, m):
                    choice = (place, c, m, k)
                    break
            if choice is None:
                choice = (place, *lv[1], 2)
        else:
            cands = sorted((n for n in typed if gfree[n] >= g), key=lambda n: (gfree[n], n))
            for k in (0, 1):
                for n in cands:
                    place = [g if i == n else 0 for i in range(N)]
                    c, m = levels(place)[0][k]
                    if fits(place, c, m):
                        choice = (place, c, m, k)
                        break
                if choice is not None:
                    break
            if choice is None:
                place = [g if i == cands[0] else 0 for i in range(N)]
                choice = (place, *levels(place)[0][1], 2)
        place, c, m, k = choice
        if mode == "greedy" and k > 0:
            out[jb["slot"]] = None
            if jb["kept"]:
                for n in range(N):
                    gfree[n] += place[n]
            continue
        if k == 2:  # shrink peers
            need_c = [max(place[n] * c - cfree[n], 0.0) for n in range(N)]
            need_m = [max(place[n] * m - mfree[n], 0.0) for n in range(N)]
            short = [n for n in range(N) if need_c[n] > 1e-6 or need_m[n] > 1e-6]
            peers = [p for p in placed if any(p["place"][n] > 0 for n in short)
                     and (p["c"] - p["fc"] > 1e-6 or p["m"] - p["fm"] > 1e-6)]
            peers.sort(key=lambda p: (sum(x > 0 for x in p["place"]), -p["c"], -p["m"], p["job"]))
            got_c, got_m = [0.0] * N, [0.0] * N
            for p in peers:
                if all(got_c[n] + 1e-6 >= need_c[n] and got_m[n] + 1e-6 >= need_m[n] for n in range(N)):
                    break
                dc, dm = max(p["c"] - p["fc"], 0.0), max(p["m"] - p["fm"], 0.0)
                for n in range(N):
                    got_c[n] += p["place"][n] * dc
                    got_m[n] += p["place"][n] * dm
                    cfree[n] += p["place"][n] * dc
                    mfree[n] += p["place"][n] * dm
                p["c"], p["m"] = p["c"] - dc, p["m"] - dm
        if not jb["kept"]:
            for n in range(N):
                gfree[n] -= place[n]
        for n in range(N):
            cfree[n] -= place[n] * c
            mfree[n] -= place[n] * m
        on = [n for n in range(N) if place[n] > 0]
        rec = dict(place=place, c=c, m=m, fc=min(fair_c[n] for n in on), fm=min(fair_m[n] for n in on), job=jb["job"],
                   level=k)
        placed.append(rec)
        out[jb["slot"]] = rec
    return out


def random_instance(rng, spec):
    """Jobs of one env: some kept on valid placements, the rest new, all fitting the GPUs."""
    from envs.placement import consolidate_first

    node_type = np.array([spec.gpu_types.index(g) for g in spec.nodes["gpu_type"]])
    cap = spec.nodes["num_gpus"].to_numpy()
    free = cap.copy()
    S = int(rng.integers(3, 12))
    jobs = []
    for s in range(S):
        g = int(rng.choice([1, 1, 1, 2, 2, 4, 8, 12]))
        t = int(rng.integers(0, len(spec.gpu_types)))
        if free[node_type == t].sum() < g:
            continue
        kept = bool(rng.random() < 0.4)
        place = np.zeros(len(cap), dtype=np.int64)
        if kept:
            place = consolidate_first(free[None, :], node_type, np.array([t]), np.array([g]))[0]
            free -= place
        mdl = int(rng.integers(0, len(models.MODELS)))
        jobs.append(dict(g=g, t=t, model=mdl, kept=kept, place=place, job=int(rng.integers(0, 1000)) * 100 + s))
    # new jobs must fit in what kept jobs leave (admission guarantees it)
    out, left = [], free.copy()
    for jb in jobs:
        if not jb["kept"]:
            if left[node_type == jb["t"]].sum() < jb["g"]:
                continue
            typed = np.flatnonzero(node_type == jb["t"])
            need = jb["g"]
            for n in typed:  # any accounting by type suffices
                take = min(need, left[n])
                left[n] -= take
                need -= take
        out.append(jb)
    rng.shuffle(out)
    for i, jb in enumerate(out):
        jb["slot"] = i
    return out


@pytest.mark.parametrize("mode", ["tune", "greedy", "proportional"])
@pytest.mark.parametrize("spec", [clusters.from_counts("mix", [("v100", 3, 8, 24, 500), ("v100", 1, 4, 40, 256)]),
                                  clusters.from_counts("types", [("v100", 2, 8, 24, 500), ("k80", 2, 4, 16, 128)])],
                         ids=["uneven-nodes", "two-types"])
def test_vectorised_planner_matches_a_scalar_reference(mode, spec):
    rng = np.random.default_rng(5)
    E = 40
    instances = [random_instance(rng, spec) for _ in range(E)]
    S = max(len(x) for x in instances)
    N = len(spec.nodes)
    node_type = np.array([spec.gpu_types.index(g) for g in spec.nodes["gpu_type"]])
    cap = spec.nodes["num_gpus"].to_numpy()
    cpu = spec.nodes["cpus"].to_numpy(np.float64)
    mem = spec.nodes["mem_gb"].to_numpy(np.float64)
    gpus = np.ones((E, S), dtype=np.int64)
    typ = np.zeros((E, S), dtype=np.int64)
    mdl = np.zeros((E, S), dtype=np.int64)
    job = np.zeros((E, S), dtype=np.int64)
    kept = np.zeros((E, S), dtype=bool)
    place = np.zeros((E, S, N), dtype=np.int64)
    for e, inst in enumerate(instances):
        for jb in inst:
            s = jb["slot"]
            gpus[e, s], typ[e, s], mdl[e, s], job[e, s], kept[e, s] = jb["g"], jb["t"], jb["model"], jb["job"], jb["kept"]
            place[e, s] = jb["place"]
    count = np.array([len(x) for x in instances])
    order = np.tile(np.arange(S), (E, 1))
    P, pc, pm, skipped = plan_resources(mode, order, count, kept, gpus, typ, mdl, job, place, node_type, cap, cpu, mem)
    levels = []
    for e, inst in enumerate(instances):
        ref = reference_plan(mode, inst, cap, cpu, mem, node_type)
        for jb in inst:
            s = jb["slot"]
            r = ref[s]
            if r is None:
                assert skipped[e, s], (e, s)
                continue
            assert not skipped[e, s]
            assert P[e, s].tolist() == list(r["place"]), (e, s)
            assert pc[e, s] == pytest.approx(r["c"]) and pm[e, s] == pytest.approx(r["m"]), (e, s)
            levels.append(r["level"])
        # feasibility: no node overdrawn in GPUs, CPUs or memory
        held = P[e] * np.nan_to_num(pc[e])[:, None]
        assert (P[e].sum(axis=0) <= cap).all()
        assert (held.sum(axis=0) <= cpu + 1e-6).all()
        assert ((P[e] * np.nan_to_num(pm[e])[:, None]).sum(axis=0) <= mem + 1e-6).all()
    if mode == "tune":  # the instances exercise every level: ideal, fair share, shrinking peers
        assert set(levels) == {0, 1, 2}, np.bincount(levels)


# ------------------------------------------------------------------------------- runs
def test_a_batch_of_envs_follows_the_single_env_runs():
    traces = [cpu_heavy_trace(40, load=1.5, seed=s) for s in (10, 11, 12)]
    singles = [simulate(tr, SPEC, Synergy(), resources=True).jobs["finish"].to_numpy() for tr in traces]
    policy = Synergy()
    core = ClusterCore(SPEC, len(traces), round_length=policy.round_length, resources=True)
    view = ClusterView(core)
    policy.reset(view)
    core.load(np.arange(len(traces)), [make_workload(tr, SPEC) for tr in traces])
    for _ in range(100000):
        if core.done.all():
            break
        execute(core, policy.decide(view))
        view.at_round_boundary = core.advance().round_hit
    for e, fin in enumerate(singles):
        np.testing.assert_allclose(core.j_finish[e, : len(fin)], fin)


def test_heterogeneous_cluster_runs_and_keeps_the_invariant():
    trace = cpu_heavy_trace(60, load=1.5, seed=4)
    policy = Recording(mode="tune")
    res = simulate(trace, "gavel", policy, resources=True)
    assert res.metrics["unfinished"] == 0
    assert policy.violations == 0 and policy.overdrawn == 0 and policy.short == 0 and policy.checked > 100


@pytest.mark.parametrize("resources", [False, True])
def test_vector_env_smoke(resources):
    env = gym.make_vec("GpuCluster-v0", num_envs=3, cluster="tiny", num_jobs=24, action_mode="priority",
                       preemption=True, resources=resources)
    eng = baselines.engine_of(env)
    env.reset(seed=0)
    policy, las = baselines.get("synergy"), baselines.get("las")
    done = 0
    for _ in range(3000):
        a = baselines.act(policy, env)
        if not resources:  # without the resource model Synergy is LAS
            np.testing.assert_array_equal(a, baselines.act(las, env))
        _o, _r, term, trunc, _i = env.step(a)
        done += int((term | trunc).sum())
        if done >= 3:
            break
    env.close()
    assert done >= 3
    if not resources:  # LAS leaves no job out; Synergy's left-out jobs get -inf, counted as invalid
        assert eng.invalid.sum() == 0


def test_bad_knobs_raise():
    with pytest.raises(ValueError, match="mode"):
        Synergy(mode="opt")
    with pytest.raises(ValueError, match="order"):
        Synergy(order="srtf")
    with pytest.raises(ValueError, match="round_length"):
        Synergy(round_length=0)
    with pytest.raises(TypeError):
        baselines.get("synergy_proportional", mode="tune")
    assert baselines.get("synergy", order="fifo").knobs() == {"mode": "tune", "order": "fifo", "round_length": 300.0}
    assert baselines.get("synergy_greedy").mode == "greedy"


def test_fifo_order_is_a_knob():
    """One server; a long 8-GPU job, then a short one. LAS (least attained) preempts the long job
    at the next round; FIFO keeps it."""
    spec = clusters.homogeneous(1, 8, cpus=24, mem_gb=500)
    trace = table([(0, 2000, 8, "resnet50"), (10, 500, 8, "lm")])
    las = simulate(trace, spec, baselines.get("synergy"), resources=True).jobs
    fifo = simulate(trace, spec, baselines.get("synergy", order="fifo"), resources=True).jobs
    assert las["first_start"][1] == 300.0 and las["preemptions"][0] >= 1
    assert fifo["first_start"][1] == pytest.approx(2000.0) and fifo["preemptions"].sum() == 0
