"""The Gymnasium, vector and SB3 faces of GpuCluster-v0."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs
from envs import GpuClusterEnv, GpuClusterVectorEnv
from envs.sb3 import GpuClusterVecEnv
from traces import clusters, synthetic

SMALL = dict(num_jobs=24, max_slots=8, cluster="tiny", trace_jobs=2000)


def policy_action(mask: np.ndarray, rng: np.random.Generator) -> int:
    """A legal action: advance one time in three when allowed, else a random startable job."""
    if mask[-1] and (not mask[:-1].any() or rng.random() < 0.33):
        return len(mask) - 1
    return int(rng.choice(np.flatnonzero(mask[:-1] if mask[:-1].any() else mask)))


def rollout(env, seed: int, episodes: int = 1, act_seed: int = 0):
    rng = np.random.default_rng(act_seed)
    obs, info = env.reset(seed=seed)
    traj = [(obs, 0.0, False, False)]
    done_eps = 0
    while done_eps < episodes:
        obs, r, term, trunc, info = env.step(policy_action(info["action_mask"], rng))
        traj.append((obs, r, term, trunc))
        if term or trunc:
            done_eps += 1
            if done_eps < episodes:
                obs, info = env.reset()
                traj.append((obs, 0.0, False, False))
    return traj, info


@pytest.mark.parametrize("mode", ["pick", "priority"])
@pytest.mark.parametrize("preemption", [False, True])
def test_gymnasium_and_sb3_env_checkers_pass_without_warnings(mode, preemption):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("GpuCluster-v0", action_mode=mode, preemption=preemption, **SMALL)
        gym_check_env(env.unwrapped)
        sb3_check_env(GpuClusterEnv(action_mode=mode, preemption=preemption, **SMALL))


def test_registered_for_make_and_make_vec():
    env = gym.make("GpuCluster-v0", **SMALL)
    assert isinstance(env.unwrapped, GpuClusterEnv)
    venv = gym.make_vec("GpuCluster-v0", num_envs=3, **SMALL)
    assert isinstance(venv.unwrapped, GpuClusterVectorEnv) and venv.num_envs == 3
    obs, info = venv.reset(seed=1)
    assert obs.shape == (3, *env.observation_space.shape)
    assert info["action_mask"].shape == (3, SMALL["max_slots"] + 1)


def test_same_seed_same_trajectory_and_different_seed_differs():
    a, _ = rollout(GpuClusterEnv(**SMALL), seed=5, episodes=2)
    b, _ = rollout(GpuClusterEnv(**SMALL), seed=5, episodes=2)
    c, _ = rollout(GpuClusterEnv(**SMALL), seed=6, episodes=1)
    assert len(a) == len(b)
    for (oa, ra, ta, ua), (ob, rb, tb, ub) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert (ra, ta, ua) == (rb, tb, ub)
    assert len(a) != len(c) or any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=False))


@pytest.mark.parametrize("options", [
    dict(),
    dict(preemption=True, round_length=600.0),
    dict(action_mode="priority", preemption=True),
    dict(cluster="gavel", num_jobs=40),
])
def test_vector_env_matches_n_single_envs_step_for_step(options):
    n, seed = 4, 100
    cfg = {**SMALL, **options}
    singles = [GpuClusterEnv(**cfg) for _ in range(n)]
    venv = GpuClusterVectorEnv(n, **cfg)
    vobs, vinfo = venv.reset(seed=seed)
    sobs = []
    sinfo = []
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=seed + i)
        sobs.append(o)
        sinfo.append(inf)
    np.testing.assert_array_equal(vobs, np.stack(sobs))
    rng = np.random.default_rng(0)
    finished = np.zeros(n, dtype=int)
    priority = cfg.get("action_mode") == "priority"
    for _ in range(3000):
        if priority:
            actions = rng.uniform(-1, 1, size=(n, cfg["max_slots"])).astype(np.float32)
        else:
            actions = np.array([policy_action(m, rng) for m in vinfo["action_mask"]])
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, inf = env.step(actions[i])
            assert r == vrew[i] and term == vterm[i] and trunc == vtrunc[i]
            if term or trunc:
                np.testing.assert_array_equal(o, vinfo["final_obs"][i])
                assert inf["episode_metrics"] == vinfo["final_info"][i]["episode_metrics"]
                o, inf = env.reset()
                finished[i] += 1
            np.testing.assert_array_equal(o, vobs[i])
            np.testing.assert_array_equal(inf["action_mask"], vinfo["action_mask"][i])
        if (finished >= 2).all():
            break
    assert (finished >= 2).all(), "episodes should end well within the step limit"


def test_mask_is_the_same_everywhere_and_forbidden_actions_are_counted():
    env = GpuClusterEnv(**SMALL)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(1)
    invalid = 0
    for _ in range(200):
        mask = info["action_mask"]
        np.testing.assert_array_equal(mask, env.action_masks())
        np.testing.assert_array_equal(mask, env.engine.mask[0])
        # the fits feature of each visible slot is what the mask says
        feats = obs[: env.engine.K * env.engine.F].reshape(env.engine.K, env.engine.F)
        np.testing.assert_array_equal(feats[:, 4] > 0.5, mask[:-1])
        forbidden = np.flatnonzero(~mask)
        if len(forbidden) and rng.random() < 0.3:
            action = int(rng.choice(forbidden))
            invalid += 1
        else:
            action = policy_action(mask, rng)
        obs, _, term, trunc, info = env.step(action)
        assert info["invalid_actions"] == invalid
        assert env.observation_space.contains(obs)
        if term or trunc:
            break
    assert invalid > 0
    for bad in (-1, 10_000):  # out of the action space: also not a crash
        env.reset(seed=0)
        _, _, _, _, info = env.step(bad)
        assert info["invalid_actions"] == 1


def test_episode_return_is_minus_total_jct_and_metrics_match_the_results():
    env = GpuClusterEnv(**SMALL)
    traj, info = rollout(env, seed=3)
    total = sum(r for _, r, _, _ in traj)
    results = env.episode_results()
    assert results["finish"].notna().all()
    assert total == pytest.approx(-results["jct"].sum() / 3600.0, rel=1e-9)
    m = info["episode_metrics"]
    assert m["avg_jct"] == pytest.approx(results["jct"].mean())
    assert m["return"] == pytest.approx(total)
    assert traj[-1][2] and not traj[-1][3]


def test_step_budget_truncates_and_sb3_reports_it():
    venv = GpuClusterVecEnv(2, seed=0, max_steps=5, **SMALL)
    obs = venv.reset()
    for _ in range(5):
        masks = venv.action_masks()
        obs, _rew, done, infos = venv.step(masks.argmax(axis=1))
    assert done.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == obs.shape[1:]
        assert info["episode"]["l"] == 5
        assert info["episode_metrics"]["unfinished"] > 0


def test_preemption_re_pick_keeps_placement_or_preempts():
    env = GpuClusterEnv(preemption=True, round_length=300.0, restart_overhead=30.0, max_steps=100_000, **SMALL)
    obs, info = env.reset(seed=2)
    eng = env.engine
    core = eng.core
    saw_repick = kept = preempted = False
    rng = np.random.default_rng(0)
    for _ in range(100_000):
        mask = info["action_mask"]
        if eng.repick[0].any():
            saw_repick = True
            cands = np.flatnonzero(mask[:-1] & (obs[: eng.K * eng.F].reshape(eng.K, eng.F)[:, 3] > 0.5))
            if len(cands) and rng.random() < 0.8:
                slot = eng.vis[0, cands[0]]
                before = eng.prev_place[0, slot].copy()
                still_free = (before <= core.free[0]).all()
                restarts = core.j_restarts[0, core.s_job[0, slot]]
                obs, _, term, trunc, info = env.step(int(cands[0]))
                if still_free:  # picked again on its old nodes: same placement, no restart
                    np.testing.assert_array_equal(core.s_place[0, slot], before)
                    assert core.j_restarts[0, core.s_job[0, slot]] == restarts
                    kept = True
                else:  # its nodes were taken by an earlier pick: it moves and pays a restart
                    assert core.j_restarts[0, core.s_job[0, slot]] == restarts + 1
            else:
                n_before = core.j_preempt[0].sum()
                unpicked = (eng.repick[0] & (core.s_status[0] == 1)).sum()
                obs, _, term, trunc, info = env.step(eng.K)
                preempted |= core.j_preempt[0].sum() == n_before + unpicked and unpicked > 0
        else:
            obs, _, term, trunc, info = env.step(policy_action(mask, rng))
        if term or trunc:
            break
    assert saw_repick and kept and preempted
    assert term and env.episode_results()["finish"].notna().all()


def test_bad_configurations_fail_at_construction():
    with pytest.raises(ValueError, match="max_slots"):
        GpuClusterEnv(max_slots=0)
    with pytest.raises(ValueError, match="restart_overhead"):
        GpuClusterEnv(restart_overhead=-5)
    with pytest.raises(ValueError, match="unknown GPU type"):
        GpuClusterEnv(cluster=clusters.from_counts("x", [("tpu", 1, 4, 8, 8)]))
    with pytest.raises(ValueError, match="unknown cluster preset"):
        GpuClusterEnv(cluster="nowhere")
    big = synthetic(50, load=0.5, cluster="small", seed=0)
    big.loc[10, "num_gpus"] = 64
    fitted = GpuClusterEnv(trace=big, cluster="tiny", num_jobs=20)  # a job no GPU pool holds is dropped
    assert fitted.dropped_jobs == int((big["num_gpus"] > 8).sum()) >= 1
    with pytest.raises(ValueError, match="action_mode"):
        GpuClusterEnv(action_mode="steer")
    with pytest.raises(TypeError, match="unknown GpuCluster options"):
        GpuClusterEnv(slots=3)


def test_real_trace_source_and_known_durations_feature():
    trace = synthetic(300, load=1.0, cluster="tiny", seed=9)
    env = GpuClusterEnv(trace=trace, cluster="tiny", num_jobs=30, max_slots=8, known_durations=True)
    obs, _info = env.reset(seed=0)
    feats = obs[: 8 * env.engine.F].reshape(8, env.engine.F)
    assert (feats[feats[:, 0] > 0, 10] > 0).all()  # remaining work visible
    hidden = GpuClusterEnv(trace=trace, cluster="tiny", num_jobs=30, max_slots=8)
    obs, _ = hidden.reset(seed=0)
    assert (obs[: 8 * hidden.engine.F].reshape(8, hidden.engine.F)[:, 10] == 0).all()
    ids = set(trace["job_id"])
    _traj, _ = rollout(env, seed=0)
    assert set(env.episode_results()["job_id"]) <= ids


def test_maskable_ppo_learns_on_the_native_vec_env():
    from sb3_contrib import MaskablePPO

    venv = GpuClusterVecEnv(4, seed=0, **SMALL)
    model = MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, verbose=0)
    model.learn(256)
    assert model.num_timesteps >= 256
    obs = venv.reset()
    actions, _ = model.predict(obs, action_masks=venv.action_masks(), deterministic=True)
    assert venv.action_masks()[np.arange(4), actions].all()


def test_env_importable_from_package_namespace():
    assert envs.GpuClusterEnv is GpuClusterEnv
    assert isinstance(synthetic(5, load=0.5, cluster="tiny", seed=0), pd.DataFrame)


def test_reset_without_seed_keeps_each_env_rng_stream():
    """A restored stream (as train.py --resume sets it) survives SB3's unseeded reset."""
    venv = GpuClusterVecEnv(3, **SMALL)
    states = [np.random.default_rng(100 + i).bit_generator.state for i in range(3)]
    for i, state in enumerate(states):
        venv.engine.rng(i).bit_generator.state = state
    venv.reset()
    hi = venv.engine.base.num_jobs - SMALL["num_jobs"]
    expected = [np.random.default_rng(100 + i).integers(0, hi + 1) for i in range(3)]
    np.testing.assert_array_equal(venv.engine.window_start, expected)
