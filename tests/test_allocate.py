"""The ``allocate`` action mode: masks, lowering, env checkers, vector/single equality, and
Allocation baselines replayed as actions against :func:`envs.simulate`."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import baselines
from envs import GpuClusterEnv, simulate
from envs.adapter import act
from envs.allocate import DIMENSIONS, LEVELS, split
from envs.core import EMPTY, RUNNING, WAITING
from envs.observation import (
    ALLOCATE_CLUSTER_FEATURES,
    ALLOCATE_SLOT_FEATURES,
    PER_TYPE,
    allocate_size,
)
from traces import clusters, synthetic

#: two GPU types, two nodes each: small enough that jobs contend for types and nodes
MIXED = clusters.from_counts("mixed", [("v100", 2, 4, 32, 244), ("k80", 2, 4, 32, 244)])
OPTS = dict(cluster=MIXED, num_jobs=16, max_slots=8, trace_jobs=400, action_mode="allocate", preemption=True,
            round_length=600.0, elastic_fraction=0.5)


def sample_masked(mask: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random allowed value of every dimension of one env's flat mask."""
    out = []
    at = 0
    while at < len(mask):
        for n in sizes:
            out.append(rng.choice(np.flatnonzero(mask[at:at + n])))
            at += n
    return np.array(out, dtype=np.int64)


def independent_masks(eng) -> tuple[list, list]:
    """Allowed GPU types and counts of each visible slot of env 0, from the state alone."""
    c = eng.core
    e = 0
    realloc = bool(eng.cfg.preemption and (eng.at_round[e] or eng.cfg.preempt_every_event))
    vis = list(eng.visible[e])
    avail = []
    for t in range(c.T):
        nodes = np.flatnonzero(c.node_type == t)
        if realloc:  # every GPU of the type but those of running jobs not shown
            held = sum(int(c.s_n[e, s]) for s in range(c.S)
                       if c.s_status[e, s] == RUNNING and s not in vis and c.s_t[e, s] == t and not c.s_guest[e, s])
            avail.append(int(c.node_cap[nodes].sum()) - held)
        else:
            avail.append(int(c.free[e, nodes].sum()))
    types, counts = [], []
    for s in vis:
        st = c.s_status[e, s]
        if st == WAITING or (st == RUNNING and realloc):
            lo, hi = int(c.s_min[e, s]), int(c.s_max[e, s])
            ok_t = {t for t in range(c.T) if avail[t] >= lo}
            types.append(ok_t or {0})
            counts.append({n for n in range(lo, hi + 1) if any(avail[t] >= n for t in ok_t)} or {1})
        elif st == RUNNING:
            types.append({int(c.s_t[e, s])})
            counts.append({int(c.s_n[e, s])})
        else:
            types.append({0})
            counts.append({1})
    return types, counts


def test_masks_allow_exactly_the_feasible_types_and_counts_and_steps_stay_feasible():
    env = GpuClusterEnv(**OPTS)
    eng = env.engine
    rng = np.random.default_rng(0)
    _obs, info = env.reset(seed=3)
    checked = starts = 0
    for step in range(400):
        m = info["action_mask"]
        level_m, type_m, gpus_m, _batch_m = split(eng.layout, m[None])
        types, counts = independent_masks(eng)
        for k in range(eng.K):
            assert set(np.flatnonzero(type_m[0, k])) == types[k]
            assert set(np.flatnonzero(gpus_m[0, k]) + 1) == counts[k]
            assert level_m[0, k].any()
        checked += 1
        a = sample_masked(m, eng.layout.sizes, rng)
        before = eng.core.s_n.sum()
        _obs, _r, term, trunc, info = env.step(a)
        assert info["invalid_actions"] == 0
        c = eng.core
        run = c.s_status[0] == RUNNING
        assert ((c.s_n[0] >= c.s_min[0]) & (c.s_n[0] <= c.s_max[0]))[run].all()
        assert (c.free[0] >= 0).all() and (c.free[0] <= c.node_cap).all()
        starts += int(c.s_n.sum() > before)
        if term or trunc:
            _obs, info = env.reset()
        del step
    assert checked == 400 and starts > 10


def test_invalid_values_are_replaced_counted_and_never_crash():
    env = GpuClusterEnv(**OPTS)
    eng = env.engine
    _obs, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    hi = eng.layout.nvec
    counted = 0
    for _ in range(200):
        a = rng.integers(-2, hi + 3)  # many values out of range or masked
        _obs, _r, term, trunc, info = env.step(a)
        c = eng.core
        run = c.s_status[0] == RUNNING
        assert ((c.s_n[0] >= c.s_min[0]) & (c.s_n[0] <= c.s_max[0]))[run].all()
        counted = info["invalid_actions"]
        if term or trunc:
            break
    assert counted > 0
    # a non-integer action is forbidden, not rounded
    _obs, info = env.reset(seed=1)
    _obs, _r, _t, _tr, info = env.step(np.full(eng.layout.nvec.shape, 0.5))
    assert info["invalid_actions"] == 1


def test_higher_level_is_served_first_and_a_misfit_falls_back():
    """Two waiting rigid 4-GPU jobs ask for the same 4 V100s: the higher level gets them, the other
    falls back to the fastest type with room (K80)."""
    import pandas as pd

    trace = pd.DataFrame({"job_id": ["a", "b", "c"], "submit_time": [0.0, 0.0, 10.0], "duration": 10000.0,
                          "num_gpus": [4, 4, 1], "user": "", "vc": "", "status": "Pass", "gpu_type": "",
                          "model": "resnet50"})
    one_each = clusters.from_counts("one_each", [("v100", 1, 4, 32, 244), ("k80", 1, 4, 32, 244)])
    env = GpuClusterEnv(trace=trace, cluster=one_each, num_jobs=3, load=None, max_slots=3, action_mode="allocate")
    eng = env.engine
    v100 = eng.core.gpu_types.index("v100")
    for first in (0, 1):
        env.reset(seed=0)
        slot = eng.visible[0, :2].copy()
        a = np.zeros((3, len(DIMENSIONS)), dtype=np.int64)
        a[:2, 1] = v100
        a[:2, 2] = 3  # 4 GPUs
        a[first, 0] = LEVELS - 1
        a[1 - first, 0] = 1
        _o, _r, _te, _tr, info = env.step(a.ravel())
        assert eng.core.clock[0] == 10.0
        t = eng.core.s_t[0, slot]
        assert t[first] == v100 and t[1 - first] != v100
        assert (eng.core.s_n[0, slot] == 4).all()
        assert info["invalid_actions"] == 0


@pytest.mark.parametrize("preemption", [False, True])
def test_env_checkers_pass_without_warnings(preemption):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    opts = {**OPTS, "preemption": preemption}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(gym.make("GpuCluster-v0", **opts).unwrapped)
        sb3_check_env(GpuClusterEnv(**opts))


def test_observation_names_every_allocate_feature():
    env = GpuClusterEnv(**OPTS)
    T, K = env.engine.T, env.engine.K
    width = lambda names: sum(T if n in PER_TYPE else 1 for n in names)  # noqa: E731
    assert allocate_size(K, T) == K * width(ALLOCATE_SLOT_FEATURES) + width(ALLOCATE_CLUSTER_FEATURES)
    base = GpuClusterEnv(**{**OPTS, "action_mode": "priority"}).observation_space.shape[0]
    assert env.observation_space.shape[0] == base + allocate_size(K, T)
    obs, _ = env.reset(seed=0)
    extra = obs[base:]
    assert np.isfinite(extra).all() and extra.min() >= 0 and extra.max() <= 1
    # the speed block of a present job is its model's row of the throughput table, fastest = 1
    c = env.engine.core
    s = env.engine.visible[0, 0]
    assert c.s_status[0, s] != EMPTY
    per = width(ALLOCATE_SLOT_FEATURES)
    at = ALLOCATE_SLOT_FEATURES.index("speed")
    speed = extra[at:at + T]
    row = c.speed[c.s_model[0, s]]
    np.testing.assert_allclose(speed, row / row.max(), rtol=1e-6)
    # node-level fragmentation: on an empty cluster every node is free, nothing is fragmented
    cl = extra[K * per:]
    assert cl[0] == 0.0  # not reallocating at the start
    np.testing.assert_array_equal(cl[1 + T:1 + 2 * T], 1.0)
    np.testing.assert_array_equal(cl[1 + 2 * T:], 0.0)


def _trajectory(env, seed: int, steps: int, act_seed: int) -> list:
    rng = np.random.default_rng(act_seed)
    obs, info = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(sample_masked(info["action_mask"], env.engine.layout.sizes, rng))
        out.append((obs, r, term, trunc))
        if term or trunc:
            obs, info = env.reset()
            out.append(obs)
    return out


def test_same_seed_same_trajectory():
    opts = {**OPTS, "max_steps": 60}
    a = _trajectory(GpuClusterEnv(**opts), 5, 150, 0)
    b = _trajectory(GpuClusterEnv(**opts), 5, 150, 0)
    c = _trajectory(GpuClusterEnv(**opts), 6, 150, 0)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True) if not isinstance(x, tuple))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0] if isinstance(x, tuple) else x, y[0] if isinstance(y, tuple) else y)
        if isinstance(x, tuple):
            assert x[1:] == y[1:]


def test_vector_env_equals_single_envs():
    N, steps = 3, 120
    opts = {**OPTS, "max_steps": 45}  # episodes end (truncated) within the run: autoresets too
    vec = gym.make_vec("GpuCluster-v0", num_envs=N, vectorization_mode="vector_entry_point", **opts)
    singles = [GpuClusterEnv(**opts) for _ in range(N)]
    ended = 0
    obs_v, info_v = vec.reset(seed=10)
    obs_s = [env.reset(seed=10 + i) for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs_v, np.stack([o for o, _ in obs_s]))
    sizes = singles[0].engine.layout.sizes
    rngs = [np.random.default_rng(i) for i in range(N)]
    masks = info_v["action_mask"]
    for _ in range(steps):
        acts = np.stack([sample_masked(masks[i], sizes, rngs[i]) for i in range(N)])
        obs_v, r_v, te_v, tr_v, info_v = vec.step(acts)
        masks = info_v["action_mask"]
        for i, env in enumerate(singles):
            o, r, te, tr, info = env.step(acts[i])
            if te or tr:
                ended += 1
                assert info_v["final_info"][i]["episode_metrics"] == info["episode_metrics"]
                o, info = env.reset()
            np.testing.assert_array_equal(obs_v[i], o)
            np.testing.assert_array_equal(masks[i], info["action_mask"])
            assert r_v[i] == r and te_v[i] == te and tr_v[i] == tr
    assert ended >= N


def test_maskable_ppo_trains_on_the_allocate_masks():
    import torch
    from sb3_contrib import MaskablePPO

    from envs.sb3 import GpuClusterVecEnv

    venv = GpuClusterVecEnv(2, seed=0, **OPTS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: threads only contend
    try:
        model = MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
        model.learn(64)
    finally:
        torch.set_num_threads(threads)
    obs = venv.reset()
    action, _ = model.predict(obs, action_masks=venv.action_masks(), deterministic=True)
    assert action.shape == (2, len(venv.engine.layout.nvec))
    _o, _r, _d, _i = venv.step(action)
    assert (venv.engine.invalid == 0).all()  # a masked policy never takes a forbidden value


# ------------------------------------------------------------------ baselines replayed as actions
@pytest.mark.parametrize(("name", "cluster", "elastic", "load"), [
    ("gavel", MIXED, 0.0, 2.0),
    ("gavel_agnostic", MIXED, 0.0, 2.0),
    ("pollux", MIXED, 1.0, 2.0),
    ("pollux", "tiny", 0.5, 3.0),
])
def test_allocation_baseline_replayed_as_actions_equals_simulate(name, cluster, elastic, load):
    """The env, with the policy's round length, preemption on and every job visible, carries a
    Gavel or Pollux decision out exactly as :func:`envs.simulate` does: same starts, finishes,
    preemptions, restarts, final allocations and GPU-seconds (types and elastic counts included)."""
    trace = synthetic(30, load=load, cluster=cluster, seed=3, duration_range=(10, 20000))
    policy = baselines.get(name)
    rl = policy.round_length
    expected = simulate(trace, cluster, policy, round_length=rl, restart_overhead=30.0, elastic_fraction=elastic,
                        known_durations=False).jobs
    env = gym.make("GpuCluster-v0", trace=trace, num_jobs=len(trace), load=None, cluster=cluster,
                   action_mode="allocate", preemption=True, round_length=rl, restart_overhead=30.0,
                   max_slots=len(trace), elastic_fraction=elastic)
    env.reset(seed=0)
    replayed = baselines.get(name)
    for _ in range(5000):
        _o, _r, term, trunc, info = env.step(act(replayed, env))
        assert info["invalid_actions"] == 0
        if term or trunc:
            break
    assert term
    got = env.unwrapped.episode_results()
    assert expected["restarts"].sum() > 0  # the decisions really moved or resized jobs
    for col in ("first_start", "finish", "gpu_seconds"):
        np.testing.assert_allclose(got[col], expected[col], rtol=0, atol=1e-9)
    for col in ("preemptions", "restarts", "gpus_last"):
        np.testing.assert_array_equal(got[col], expected[col])


@pytest.mark.parametrize("name", ["sia", "optimus", "lyra", "heet", "tiresias"])
def test_every_allocation_baseline_runs_as_allocate_actions(name):
    """Sia, Optimus, Lyra and Heet (and a Priority baseline) drive the vector env through
    allocate actions; Lyra and Heet re-decide running jobs at every event, so they get
    ``preempt_every_event``."""
    policy = baselines.get(name)
    every = name in ("lyra", "heet")
    env = gym.make_vec("GpuCluster-v0", num_envs=2, **{**OPTS, "round_length": policy.round_length or 300.0,
                                                         "preempt_every_event": every, "max_slots": 16,
                                                         "known_durations": policy.needs_durations})
    env.reset(seed=0)
    for _ in range(60):
        _o, _r, _te, _tr, info = env.step(act(policy, env))
        assert (info["invalid_actions"] == 0).all()


def test_agent_in_simulate_makes_the_env_decisions():
    """An allocate-mode agent replayed by :class:`agents.AgentPolicy` in :func:`envs.simulate`
    gives the per-job results of the same agent acting in the env (all jobs visible)."""
    import torch
    from sb3_contrib import MaskablePPO

    from agents import Agent, AgentPolicy
    from envs import EnvConfig
    from envs.workload import drop_oversize

    trace, _ = drop_oversize(synthetic(20, load=2.0, cluster=MIXED, seed=5, duration_range=(10, 20000)), MIXED)
    opts = dict(trace=trace, num_jobs=len(trace), load=None, cluster=MIXED, action_mode="allocate", preemption=True,
                round_length=600.0, restart_overhead=30.0, max_slots=len(trace), elastic_fraction=0.5)
    env = GpuClusterEnv(**opts)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = MaskablePPO("MlpPolicy", env, seed=1, device="cpu")  # untrained: an arbitrary masked policy
        obs, info = env.reset(seed=0)
        for _ in range(5000):
            a, _ = model.predict(obs, action_masks=info["action_mask"], deterministic=True)
            obs, _r, term, trunc, info = env.step(a)
            if term or trunc:
                break
        assert term
        got = env.episode_results()
        cfg = EnvConfig.from_options(**{k: v for k, v in opts.items() if k not in ("trace", "cluster", "elastic_fraction")})
        agent = Agent(model, "maskable_ppo", "mlp", {k: getattr(cfg, k) for k in ("max_slots", "known_durations",
                      "action_mode", "preemption", "round_length", "restart_overhead", "reward", "reward_scale",
                      "visible_order", "serve_hidden", "preempt_every_event")})
        expected = simulate(trace, MIXED, AgentPolicy(agent), restart_overhead=30.0, elastic_fraction=0.5,
                            known_durations=False).jobs
    finally:
        torch.set_num_threads(threads)
    assert got["restarts"].sum() > 0
    for col in ("first_start", "finish", "gpu_seconds"):
        np.testing.assert_allclose(got[col], expected[col], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got["restarts"], expected["restarts"])
