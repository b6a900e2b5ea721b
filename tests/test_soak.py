"""Long-run checks of the vector env: a random-action soak over every action mode, cluster preset
and preemption setting; GPU-second conservation; each reward option's documented return
identity; and seed determinism of whole vector-env trajectories.

The soak (marker ``soak``) plays each (preset, action mode, preemption) case for
``CLUSTERGYM_SOAK_STEPS`` vector-env steps (default 300: the whole file takes about 15 s of CPU),
feeding valid actions mixed with invalid ones (NaN, +-inf, out of range, masked-out picks,
out-of-range scores, integer, float16/32/64 and unsigned arrays), and checks the state's
invariants after every step. ``CLUSTERGYM_SOAK_SEED`` (default 0) shifts every case's seed, to
explore fresh action streams. A long soak::

    CLUSTERGYM_SOAK_STEPS=20000 CLUSTERGYM_SOAK_SEED=7 python -m pytest tests/test_soak.py -m soak

(about 10 minutes on one core; ``-m "not soak"`` skips the soak). A failure names the case, its
options, the seed and the step at which an invariant broke.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from envs import GpuClusterVectorEnv
from envs.core import EMPTY, RUNNING, WAITING
from envs.engine import ACTION_MODES, REWARDS, SLOT_FEATURES
from traces import clusters, models

SOAK_STEPS = int(os.environ.get("CLUSTERGYM_SOAK_STEPS", "300"))
SOAK_SEED = int(os.environ.get("CLUSTERGYM_SOAK_SEED", "0"))
N_ENVS = 3
#: small windows of a small synthetic trace, so episodes end (and autoreset) within a soak
BASE = dict(num_jobs=12, trace_jobs=2000)
FEATURE = {name: i for i, name in enumerate(SLOT_FEATURES)}


def case_seed(*parts: object) -> int:
    """A stable seed per test case (``hash`` of a str changes between interpreter runs)."""
    return zlib.crc32("-".join(map(str, parts)).encode()) + SOAK_SEED


# ---------------------------------------------------------------------------- actions
def pick_actions(rng: np.random.Generator, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pick-mode actions for every env, mostly allowed, some forbidden or malformed, in a random
    array dtype; and which of them the env must count as invalid."""
    E, K1 = mask.shape
    K = K1 - 1
    actions = (rng.random(mask.shape) * mask).argmax(axis=1).astype(np.float64)
    odd = rng.random(E) < 0.35
    bad_values = [-1.0, float(K1), float(K1 + 7), 2.0**31, 2.0**53, -(2.0**40), math.nan, math.inf, -math.inf, 1e30]
    for e in np.flatnonzero(odd):
        forbidden = np.flatnonzero(~mask[e])
        if len(forbidden) and rng.random() < 0.4:
            actions[e] = float(rng.choice(forbidden))
        else:
            actions[e] = bad_values[rng.integers(len(bad_values))]
    dtype = rng.choice(["int64", "int32", "uint64", "float64", "float32"])
    finite = np.isfinite(actions) & (np.abs(actions) < 2.0**62)
    if dtype in ("int64", "int32", "uint64"):
        ints = np.where(finite, actions, -1).astype(np.int64)
        if dtype == "int32":
            ints = np.clip(ints, -(2**31), 2**31 - 1)
        arr = ints.astype(dtype)  # uint64 wraps negatives to huge values: still out of range
        used = arr.astype(np.int64)
        ok = (used >= 0) & (used <= K)
    else:
        arr = actions.astype(dtype)
        ok = np.isfinite(arr) & (arr >= 0) & (arr <= K)
        used = np.where(ok, arr, 0).astype(np.int64)
    ok &= mask[np.arange(E), np.clip(used, 0, K)]
    return arr, ~ok


def priority_actions(rng: np.random.Generator, E: int, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Priority-mode scores for every env, some out of range or non-finite, in a random dtype;
    and which envs got only in-range finite scores, and which only non-finite ones."""
    scores = rng.uniform(-1.0, 1.0, size=(E, K))
    kind = rng.integers(0, 6, size=E)
    for e in range(E):
        if kind[e] == 1:  # out of range: clipped
            scores[e] *= 1e6
        elif kind[e] == 2:  # some non-finite
            scores[e, rng.random(K) < 0.5] = rng.choice([math.nan, math.inf, -math.inf])
        elif kind[e] == 3:  # all non-finite
            scores[e] = rng.choice([math.nan, math.inf, -math.inf], size=K)
        elif kind[e] == 4:  # ties
            scores[e] = np.round(scores[e])
    dtype = rng.choice(["float64", "float32", "float16", "int64"])
    if dtype == "int64":
        scores = np.where(np.isfinite(scores), np.clip(np.round(scores), -5, 5), 0.0)
    with np.errstate(over="ignore"):
        arr = scores.astype(dtype)
    as_float = arr.astype(np.float64)
    clean = (np.isfinite(as_float) & (np.abs(as_float) <= 1.0)).all(axis=1)
    all_bad = ~np.isfinite(as_float).any(axis=1)
    return arr, clean, all_bad


def allocate_actions(rng: np.random.Generator, env: GpuClusterVectorEnv, valid: float = 0.5) -> np.ndarray:
    """Allocate-mode actions: every entry drawn from the allowed values in a share ``valid`` of the
    envs, from one below to one above its range in the others (so many are masked or out of range)."""
    nvec = env.engine.layout.nvec
    E = env.num_envs
    out = rng.integers(-1, nvec + 1, (E, len(nvec)))
    mask = env.action_masks()
    at = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    for e in np.flatnonzero(rng.random(E) < valid):
        out[e] = [rng.choice(np.flatnonzero(mask[e, a:a + n])) for a, n in zip(at, nvec, strict=True)]
    return out


# ---------------------------------------------------------------------------- invariants
def check_state(env: GpuClusterVectorEnv, obs: np.ndarray, info: dict) -> None:
    """Invariants of the state the vector env shows after a step or reset."""
    eng = env.engine
    c = eng.core
    E, K, F = env.num_envs, eng.K, eng.F
    # observations: finite, in the observation space
    assert obs.dtype == np.float32 and np.isfinite(obs).all(), "non-finite observation"
    assert env.observation_space.contains(obs), f"observation outside [0, 1]: {obs.min()}..{obs.max()}"
    # masks: one allowed action at least; the same in info, action_masks() and the fits feature;
    # a slot is allowed iff it shows a waiting job that fits on some GPU type now
    mask = info["action_mask"]
    assert mask.shape == (E, eng.mask_size) and mask.dtype == bool
    assert mask.any(axis=1).all(), "an env with no allowed action"
    np.testing.assert_array_equal(mask, env.action_masks())
    if eng.layout is not None:  # allocate mode: the pick mask still feeds the fits feature
        mask = eng.mask
    feats = obs[:, : K * F].reshape(E, K, F)
    np.testing.assert_array_equal(feats[:, :, FEATURE["fits"]] > 0.5, mask[:, :K])
    vis = np.asarray(eng.visible)
    st = np.take_along_axis(c.s_status, vis, axis=1)
    free_t = c.free_per_type()
    fits = np.take_along_axis(c.s_gpus, vis, axis=1) <= free_t.max(axis=1, keepdims=True)
    np.testing.assert_array_equal(mask[:, :K], (st == WAITING) & fits)
    np.testing.assert_array_equal(feats[:, :, FEATURE["present"]] > 0.5, st != EMPTY)
    np.testing.assert_array_equal(feats[:, :, FEATURE["waiting"]] > 0.5, st == WAITING)
    np.testing.assert_array_equal(feats[:, :, FEATURE["running"]] > 0.5, st == RUNNING)
    # GPUs: never over capacity per node or per type; every GPU is free or placed
    assert (c.free >= 0).all() and (c.free <= c.node_cap).all(), "free GPUs outside [0, node capacity]"
    placed = c.s_place.sum(axis=1)
    np.testing.assert_array_equal(c.free + placed, np.broadcast_to(c.node_cap, c.free.shape))
    running = c.s_status == RUNNING
    np.testing.assert_array_equal(c.s_place.sum(axis=2), np.where(running, c.s_n, 0))
    assert (c.s_n[running] > 0).all() and (c.s_n[~running] == 0).all(), "GPUs held by a job that is not running"
    wrong_type = (c.s_place > 0) & (c.node_type[None, None, :] != c.s_t[:, :, None])
    assert not wrong_type.any(), "a gang holds GPUs of a type other than its own"
    for t in range(c.T):
        used = np.where(running & (c.s_t == t), c.s_n, 0).sum(axis=1)
        assert (used <= c.capacity[t]).all(), f"GPU type {c.gpu_types[t]} over capacity"
    np.testing.assert_array_equal(free_t, c.capacity[None, :] - (placed @ c.type_onehot))
    # jobs: each active job is in exactly one slot, has arrived and has not finished
    for e in range(E):
        active = c.s_status[e] != EMPTY
        jobs = c.s_job[e][active]
        n = int(c.n_jobs[e])
        assert len(np.unique(jobs)) == len(jobs), f"env {e}: a job in two slots (waiting and running)"
        assert ((jobs >= 0) & (jobs < n)).all()
        assert np.isnan(c.j_finish[e, jobs]).all(), f"env {e}: a finished job still holds a slot"
        assert (c.j_submit[e, jobs] <= c.clock[e] * (1 + 1e-12) + 1e-9).all(), f"env {e}: a job active before its submit"
        done = ~np.isnan(c.j_finish[e, :n])
        assert int(done.sum()) == int(c.n_done[e]) and c.n_done[e] <= n
        assert int(c.next_job[e]) == int(c.n_done[e]) + int(active.sum()), f"env {e}: arrived != done + active"
        assert (c.j_finish[e, :n][done] <= c.clock[e]).all()
        assert (c.s_done[e][active] <= c.s_work[e][active] * (1 + 1e-9)).all(), f"env {e}: progress beyond the work"
    np.testing.assert_array_equal(info["clock"], c.clock)


def soak(env: GpuClusterVectorEnv, seed: int, steps: int, on_step: Callable[[int], None] | None = None) -> int:
    """Play ``steps`` steps of random valid and invalid actions, checking invariants after each;
    returns the number of finished episodes."""
    eng = env.engine
    cfg = eng.cfg
    E, K = env.num_envs, eng.K
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    check_state(env, obs, info)
    clock = info["clock"].copy()
    invalid = info["invalid_actions"].copy()
    progress = eng.core.n_done.copy()
    finished = 0
    for step in range(steps):
        if cfg.action_mode == "pick":
            actions, expect_invalid = pick_actions(rng, info["action_mask"])
        elif cfg.action_mode == "allocate":
            actions = allocate_actions(rng, env)
        else:
            actions, clean, all_bad = priority_actions(rng, E, K)
            # a score counts only for a job on show
            all_bad &= (obs[:, : K * eng.F].reshape(E, K, eng.F)[:, :, FEATURE["present"]] > 0.5).any(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            obs, reward, term, trunc, info = env.step(actions)
        done = term | trunc
        check_state(env, obs, info)
        assert reward.shape == (E,) and np.isfinite(reward).all(), f"non-finite reward {reward}"
        # the values that ended each finished episode, before its autoreset
        end_clock = info["clock"].copy()
        end_invalid = info["invalid_actions"].copy()
        end_done = info["jobs_done"].copy()
        for e in np.flatnonzero(done):
            fi = info["final_info"][e]
            end_clock[e], end_invalid[e], end_done[e] = fi["clock"], fi["invalid_actions"], fi["jobs_done"]
            fo = info["final_obs"][e]
            assert np.isfinite(fo).all() and env.single_observation_space.contains(fo)
            m = fi["episode_metrics"]
            assert all(math.isfinite(v) for v in m.values()), f"env {e}: non-finite episode metrics {m}"
            assert m["steps"] >= 1 and m["invalid_actions"] == fi["invalid_actions"]
            if term[e]:
                assert m["unfinished"] == 0 and fi["jobs_done"] == cfg.num_jobs
                assert 0.0 < m["utilization"] <= 1.0 + 1e-9
            else:
                assert m["steps"] == eng.max_steps, "truncated before the step budget"
            assert info["clock"][e] == 0.0 and info["invalid_actions"][e] == 0 and info["jobs_done"][e] == 0
        dt = end_clock - clock
        assert (dt >= 0).all(), f"time went backwards: {clock} -> {end_clock}"
        assert (end_done >= progress).all(), "finished-job count decreased"
        # rewards: signs and sizes bounded by the elapsed time
        scale = cfg.reward_scale
        if cfg.reward == "jct":
            assert (reward <= 0).all() and (-reward * scale <= cfg.num_jobs * dt * (1 + 1e-9) + 1e-9).all()
        elif cfg.reward == "slowdown":
            assert (reward <= 0).all()
        else:
            assert (reward >= 0).all() and (reward * scale <= dt * (1 + 1e-9) + 1e-9).all()
        # forbidden actions are counted
        delta = end_invalid - invalid
        if cfg.action_mode == "pick":
            np.testing.assert_array_equal(delta, expect_invalid.astype(np.int64), err_msg=f"actions {actions!r}")
        elif cfg.action_mode == "allocate":
            assert ((delta == 0) | (delta == 1)).all(), "an allocate action counted other than once or not at all"
        else:
            assert (delta[clean] == 0).all(), f"in-range finite scores counted invalid: {actions!r}"
            assert (delta[all_bad] >= 1).all(), f"non-finite scores for the jobs on show not counted: {actions!r}"
        clock, invalid, progress = info["clock"].copy(), info["invalid_actions"].copy(), info["jobs_done"].copy()
        finished += int(done.sum())
        if on_step is not None:
            on_step(step)
    return finished


@pytest.mark.soak
@pytest.mark.parametrize("preemption", [False, True], ids=["nopreempt", "preempt"])
@pytest.mark.parametrize("mode", ACTION_MODES)
@pytest.mark.parametrize("preset", sorted(clusters.PRESETS))
def test_random_soak_keeps_every_invariant(preset: str, mode: str, preemption: bool) -> None:
    seed = case_seed(preset, mode, preemption)
    rng = np.random.default_rng(seed)
    options = dict(
        BASE, cluster=preset, action_mode=mode, preemption=preemption,
        max_slots=int(rng.choice([3, 8])), reward=str(rng.choice(REWARDS)),
        round_length=float(rng.choice([120.0, 1800.0])), restart_overhead=float(rng.choice([0.0, 30.0])),
        known_durations=bool(rng.integers(2)), elastic_fraction=float(rng.choice([0.0, 0.5])),
        max_steps=int(rng.choice([60, 400])), trace_jobs=int(rng.choice([2000, 20_000])),  # 20,000: the default
    )
    env = GpuClusterVectorEnv(N_ENVS, **options)
    step = -1

    def note(i: int) -> None:
        nonlocal step
        step = i

    try:
        finished = soak(env, seed, SOAK_STEPS, note)
    except Exception as exc:
        raise AssertionError(f"preset={preset} mode={mode} preemption={preemption} seed={seed} "
                             f"step={step + 1} options={options}: {exc!r}") from exc
    if SOAK_STEPS >= options["max_steps"]:
        assert finished >= N_ENVS, "an episode outlived the step budget"


# ---------------------------------------------------------------------------- episode ends
class EpisodeLog:
    """Records, for each env of a vector env, its first finished episode: per-job results,
    metrics, the summed rewards, and the GPU-seconds integrated from the allocations observed
    at each clock advance (the number of GPUs held times the time the clock moved)."""

    def __init__(self, env: GpuClusterVectorEnv) -> None:
        self.eng = eng = env.engine
        core = eng.core
        self.integral = np.zeros(env.num_envs)
        self.returns = np.zeros(env.num_envs)
        self.first: dict[int, dict] = {}
        advance, reset_envs = core.advance, eng.reset_envs

        def observed_advance(envs=None):
            held = core.s_n.sum(axis=1).astype(np.float64)
            before = core.clock.copy()
            stats = advance(envs)
            self.integral += held * (core.clock - before)
            return stats

        def logged_reset(idx):
            for e in np.asarray(idx, dtype=np.int64):
                e = int(e)
                if core.n_jobs[e] > 0 and core.done[e] and e not in self.first:
                    n = int(core.n_jobs[e])
                    self.first[e] = {
                        "results": eng.episode_results(e), "metrics": eng.episode_metrics(e),
                        "integral": float(self.integral[e]), "gpu_seconds": float(core.gpu_seconds[e]),
                        "model": core.j_model[e, :n].copy(),
                    }
            reset_envs(idx)
            self.integral[np.asarray(idx, dtype=np.int64)] = 0.0

        core.advance = observed_advance
        eng.reset_envs = logged_reset

    def play(self, env: GpuClusterVectorEnv, seed: int, max_steps: int = 20_000) -> None:
        """Step with random allowed picks (or random scores) until every env finished once."""
        rng = np.random.default_rng(seed)
        _, info = env.reset(seed=seed)
        K = self.eng.K
        ret = np.zeros(env.num_envs)
        for _ in range(max_steps):
            if self.eng.cfg.action_mode == "pick":
                mask = info["action_mask"]
                weights = rng.random(mask.shape) * mask
                weights[:, K] *= 0.5  # pick more often than advance: queues stay short
                actions = weights.argmax(axis=1)
            elif self.eng.cfg.action_mode == "allocate":
                actions = allocate_actions(rng, env, valid=1.0)
            else:
                actions = rng.uniform(-1, 1, size=(env.num_envs, K)).astype(np.float32)
            _, reward, term, trunc, info = env.step(actions)
            ret += reward
            for e in np.flatnonzero(term | trunc):
                assert term[e], "episode truncated: raise max_steps"
                if "return" not in self.first[e]:
                    self.first[e]["return"] = ret[e]
                ret[e] = 0.0
            if len(self.first) == env.num_envs:
                return
        raise AssertionError("not every env finished an episode")


MODES = [(m, p) for m in ACTION_MODES for p in (False, True)]
MODE_IDS = [f"{m}-{'preempt' if p else 'nopreempt'}" for m, p in MODES]


@pytest.mark.parametrize(("mode", "preemption"), MODES, ids=MODE_IDS)
def test_gpu_seconds_consumed_by_jobs_equal_the_allocations_integrated_over_time(mode: str, preemption: bool) -> None:
    seed = case_seed("gpu-seconds", mode, preemption)
    env = GpuClusterVectorEnv(N_ENVS, **BASE, cluster="gavel", action_mode=mode, preemption=preemption,
                              max_slots=8, round_length=1800.0, max_steps=20_000)
    log = EpisodeLog(env)
    log.play(env, seed)
    core = env.engine.core
    speed = models.speed_matrix(core.gpu_types).max(axis=1)  # fastest type of each model
    for e, ep in log.first.items():
        r, m = ep["results"], ep["metrics"]
        per_job = r["gpu_seconds"].to_numpy()
        where = f"env {e} seed {seed}"
        assert per_job.sum() == pytest.approx(ep["integral"], rel=1e-9), where
        assert ep["gpu_seconds"] == pytest.approx(ep["integral"], rel=1e-9), where
        assert m["utilization"] * core.total_gpus * m["makespan"] == pytest.approx(ep["integral"], rel=1e-9), where
        # a rigid job holds its GPUs at least as long as its work takes on the fastest type
        floor = r["num_gpus"].to_numpy() * r["duration"].to_numpy() / speed[ep["model"]]
        assert (per_job >= floor * (1 - 1e-9)).all(), where
        assert (r["gpus_last"] == r["num_gpus"]).all(), where


@pytest.mark.parametrize(("mode", "preemption"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("reward", REWARDS)
def test_episode_return_matches_each_reward_options_documented_identity(reward: str, mode: str, preemption: bool) -> None:
    """jct: minus total JCT / reward_scale; slowdown: minus total slowdown; utilization:
    allocated GPU-seconds / (cluster GPUs x reward_scale)."""
    seed = case_seed("return", reward, mode, preemption)
    scale = 900.0
    env = GpuClusterVectorEnv(2, **BASE, cluster="tiny", action_mode=mode, preemption=preemption, max_slots=8,
                              reward=reward, reward_scale=scale, round_length=1800.0, max_steps=20_000)
    log = EpisodeLog(env)
    log.play(env, seed)
    total_gpus = env.engine.core.total_gpus
    for e, ep in log.first.items():
        r, m = ep["results"], ep["metrics"]
        assert r["finish"].notna().all()
        expected = {
            "jct": -r["jct"].sum() / scale,
            "slowdown": -r["slowdown"].sum(),
            "utilization": r["gpu_seconds"].sum() / (total_gpus * scale),
        }[reward]
        assert ep["return"] == pytest.approx(expected, rel=1e-9), f"env {e} seed {seed}"
        assert m["return"] == pytest.approx(ep["return"], rel=1e-12)
        if reward == "utilization":
            assert ep["return"] == pytest.approx(m["utilization"] * m["makespan"] / scale, rel=1e-9)


# ---------------------------------------------------------------------------- determinism
def trajectory(options: dict, seed: int, steps: int) -> list[tuple]:
    """Observations, rewards, ends, infos and finished-episode metrics of ``steps`` steps of
    seeded random (valid and invalid) actions."""
    env = GpuClusterVectorEnv(N_ENVS, **options)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=seed)
    out: list[tuple] = [(obs, info["action_mask"], info["clock"])]
    for _ in range(steps):
        if options["action_mode"] == "pick":
            actions, _ = pick_actions(rng, info["action_mask"])
        elif options["action_mode"] == "allocate":
            actions = allocate_actions(rng, env)
        else:
            actions, _, _ = priority_actions(rng, N_ENVS, env.engine.K)
        with np.errstate(invalid="ignore", over="ignore"):
            obs, reward, term, trunc, info = env.step(actions)
        ends = [info["final_info"][e]["episode_metrics"] for e in np.flatnonzero(term | trunc)]
        out.append((obs, reward, term, trunc, info["action_mask"], info["clock"], info["invalid_actions"], ends))
    return out


@pytest.mark.parametrize(("mode", "preemption"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("preset", ["tiny", "gavel"])
def test_same_seed_gives_the_same_vector_env_trajectory(preset: str, mode: str, preemption: bool) -> None:
    options = dict(BASE, cluster=preset, action_mode=mode, preemption=preemption, max_slots=6, round_length=300.0)
    a = trajectory(options, 11, 150)
    b = trajectory(options, 11, 150)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, np.ndarray):
                np.testing.assert_array_equal(u, v, err_msg=f"step {i}")
            else:
                assert u == v, f"step {i}"
    c = trajectory(options, 12, 20)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=False)), "a different seed changed nothing"
