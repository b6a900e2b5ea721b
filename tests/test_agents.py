"""Learned agents and train.py: a tiny run end to end, save/load, resume, masks, the adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import train
from agents import AgentPolicy, load_agent, make_model, save_agent
from envs import EnvConfig, GpuClusterEnv, simulate
from envs.sb3 import GpuClusterVecEnv
from traces import clusters, synthetic

torch.set_num_threads(1)
TINY = ["--trace-jobs", "1500", "--num-jobs", "16", "--max-slots", "8", "--num-envs", "4", "--n-steps", "32",
        "--batch-size", "64", "--n-epochs", "1", "--eval-windows", "2", "--eval-seeds", "1"]
PICK = ["--action-mode", "pick", "--algo", "maskable_ppo", "--no-preemption"]
CFG = EnvConfig(num_jobs=16, max_slots=8, trace_jobs=1500)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny train.py run in pick mode (a masked agent), end to end."""
    out = tmp_path_factory.mktemp("run")
    results = train.main([*TINY, *PICK, "--output", str(out), "--total-timesteps", "512", "--eval-every", "256",
                          "--checkpoint-every", "256"])
    return out, results


def test_tiny_training_run_end_to_end(trained):
    out, results = trained
    for name in ("args.json", "progress.csv", "episodes.csv", "eval.csv", "results.csv", "agent/model.zip",
                 "agent/agent.json", "checkpoints/last/model.zip"):
        assert (out / name).exists(), name
    assert {"agent", "fifo", "tiresias", "srtf"} <= set(results["policy"])
    best = results[results.policy != "agent"]["avg_jct"].min()
    np.testing.assert_allclose(results["vs_best_baseline"], results["avg_jct"] / best)
    evals = pd.read_csv(out / "eval.csv")
    assert list(evals["step"]) == [256, 512] and (evals["agent_avg_jct"] > 0).all()
    assert any(Path(out, "tb").iterdir())  # TensorBoard events


def test_save_load_gives_identical_actions(tmp_path):
    venv = GpuClusterVecEnv(4, seed=0, config=CFG)
    model = make_model("maskable_ppo", "slot", venv, CFG, n_steps=32, batch_size=64, n_epochs=1)
    model.learn(128)
    save_agent(model, tmp_path / "a", algo="maskable_ppo", policy="slot", env_config=CFG)
    agent = load_agent(tmp_path / "a")
    for _ in range(50):
        obs, masks = venv.engine.observe()
        a1, _ = model.predict(obs, action_masks=masks, deterministic=True)
        a2, _ = agent.model.predict(obs, action_masks=masks, deterministic=True)
        np.testing.assert_array_equal(a1, a2)
        venv.step(a1)
    with pytest.raises(FileNotFoundError, match="not an agent folder"):
        load_agent(tmp_path)


def test_slot_policy_is_permutation_equivariant():
    venv = GpuClusterVecEnv(1, seed=0, config=CFG)
    model = make_model("maskable_ppo", "slot", venv, CFG, n_steps=32, batch_size=32)
    eng = venv.engine
    venv.reset()
    obs, _ = eng.observe()
    x = torch.as_tensor(obs)
    logits = model.policy.mlp_extractor.forward_actor(x)
    perm = np.random.default_rng(0).permutation(eng.K)
    slots = obs[:, : eng.K * eng.F].reshape(1, eng.K, eng.F)[:, perm]
    shuffled = np.concatenate([slots.reshape(1, -1), obs[:, eng.K * eng.F :]], axis=1)
    logits_p = model.policy.mlp_extractor.forward_actor(torch.as_tensor(shuffled))
    torch.testing.assert_close(logits_p[0, :-1], logits[0, :-1][perm])
    torch.testing.assert_close(logits_p[0, -1], logits[0, -1])


def test_masked_agent_never_takes_a_forbidden_action(trained):
    out, _ = trained
    agent = load_agent(out / "agent")
    env = GpuClusterEnv(**{**agent.env, "num_jobs": 16, "trace_jobs": 1500})
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        while True:
            action, _ = agent.model.predict(obs, action_masks=info["action_mask"], deterministic=False)
            assert info["action_mask"][action]
            obs, _, term, trunc, info = env.step(action)
            if term or trunc:
                assert info["invalid_actions"] == 0
                break


def test_agent_adapter_runs_in_simulate(trained):
    out, _ = trained
    trace = synthetic(60, load=1.0, cluster="tiny", seed=4)
    res = simulate(trace, "tiny", AgentPolicy(out / "agent"), known_durations=True)
    assert res.metrics["unfinished"] == 0 and len(res.jobs) == 60
    assert (res.jobs["first_start"] >= res.jobs["submit"]).all()
    with pytest.raises(ValueError, match="durations"):
        simulate(trace, "tiny", AgentPolicy(out / "agent"), known_durations=False)


def test_agent_episodes_stepped_together_equal_one_by_one(trained):
    """train.py judges the agent with run_policy (every episode in one core, one forward pass
    per step): the same schedules as simulating each episode alone."""
    from agents.evaluation import WindowSet, episode_result, run_episodes, run_policy

    out, _ = trained
    agent = load_agent(out / "agent")
    wins = [synthetic(30, load=1.5, cluster="tiny", seed=s) for s in range(3)]
    windows = WindowSet("test", 30, wins, [0, 1, 2], 3, 0, 0.0)
    alone = run_episodes(windows, [0, 1], lambda w, seed: episode_result(
        simulate(w, "tiny", AgentPolicy(agent), known_durations=True, seed=seed)))
    together = run_policy(windows, [0, 1], clusters.get("tiny"), lambda: AgentPolicy(agent), True, batch=4)
    np.testing.assert_array_equal(together.avg_jct, alone.avg_jct)
    for a, b in zip(together.jcts, alone.jcts, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_continues_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    common = [*TINY, "--output", str(out), "--eval-every", "0", "--checkpoint-every", "128"]
    train.main([*common, "--total-timesteps", "256"])
    before = pd.read_csv(out / "progress.csv")
    train.main(["--resume", str(out), "--total-timesteps", "512"])
    after = pd.read_csv(out / "progress.csv")
    steps = after["time/total_timesteps"].to_numpy()
    assert steps[: len(before)].tolist() == before["time/total_timesteps"].tolist()
    assert (np.diff(steps) > 0).all(), "no duplicate or out-of-order log rows"
    assert steps[-1] == 512
    with pytest.raises(SystemExit, match="already holds a run"):
        train.main([*common, "--total-timesteps", "256"])
    # the default (priority mode, preemptive) agent replays too, preempting at its round length
    policy = AgentPolicy(out / "agent")
    assert policy.round_length == 1800.0
    res = simulate(synthetic(40, load=1.5, cluster="tiny", seed=2), "tiny", policy, known_durations=True)
    assert res.metrics["unfinished"] == 0


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "train.py", *TINY, "--output", str(out), "--total-timesteps", "1000000",
           "--eval-every", "0", "--checkpoint-every", "1000000"]
    proc = subprocess.Popen(cmd, cwd=Path(train.__file__).parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:  # wait until training has started
        if line.startswith("training "):  # printed once the signal handlers are in place
            break
    import time

    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert "--resume" in output
    saved = load_agent(out / "agent").model.num_timesteps
    # a stop takes effect at the next rollout boundary (128 steps: 4 envs x 32)
    assert 0 <= saved < 1_000_000 and saved % 128 == 0
    import pickle

    state = pickle.loads((out / "checkpoints" / "last" / "state.pkl").read_bytes())
    assert state["num_timesteps"] == saved


def test_train_on_the_pollux_workloads_in_allocate_mode(tmp_path, shared):
    """``--trace pollux-workloads --cluster pollux --action-mode allocate``: the eight workloads as
    goodput jobs, split by time, an allocate-mode agent trained and judged against Pollux, whose
    row is in the final table; every window's jobs are goodput jobs of the workloads."""
    shared("reference", "pollux", what="the Pollux reference measurements")
    out = tmp_path / "run"
    results = train.main(["--trace", "pollux-workloads", "--cluster", "pollux", "--action-mode", "allocate",
                          "--algo", "maskable_ppo", "--policy", "mlp", "--num-jobs", "16", "--max-slots", "8",
                          "--num-envs", "4", "--n-steps", "32", "--batch-size", "64", "--n-epochs", "1",
                          "--eval-windows", "2", "--eval-seeds", "1", "--total-timesteps", "128",
                          "--eval-every", "128", "--baselines", "pollux", "--output", str(out),
                          "--baseline-cache", str(tmp_path / "cache")])
    assert {"agent", "pollux", "tiresias", "fifo"} <= set(results["policy"])
    assert (results["avg_jct"] > 0).all()
    args = json.loads((out / "args.json").read_text())
    assert args["trace"] == "pollux-workloads" and args["action_mode"] == "allocate"
