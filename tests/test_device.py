"""Where the network runs (``--device``): resolution, the CPU fallback of ``auto``, and agents
that load on the CPU whatever device they were saved from. The GPU cases run only where CUDA is."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import train
from agents import load_agent, make_model, resolve_device, save_agent
from envs import EnvConfig
from envs.sb3 import GpuClusterVecEnv

CFG = EnvConfig(num_jobs=16, max_slots=8, trace_jobs=1500)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@no_cuda
def test_auto_falls_back_to_the_cpu_and_says_so() -> None:
    said: list[str] = []
    assert resolve_device("auto", log=said.append) == torch.device("cpu")
    assert said == ["device auto: CUDA is not available on this machine, using the CPU"]


@no_cuda
def test_asking_for_cuda_without_it_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'cuda:1': CUDA is not available on this machine"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "tpu", ""])
def test_unknown_device_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, cuda:N"):
        resolve_device(bad)


@pytest.mark.parametrize("saved_on", ["auto", "cpu", pytest.param("cuda", marks=needs_cuda)])
def test_a_saved_agent_loads_on_the_cpu_with_identical_actions(tmp_path, saved_on: str) -> None:
    venv = GpuClusterVecEnv(4, seed=0, config=CFG)
    model = make_model("maskable_ppo", "slot", venv, CFG, n_steps=32, batch_size=64, n_epochs=1,
                       device=saved_on)
    model.learn(128)
    save_agent(model, tmp_path / "a", algo="maskable_ppo", policy="slot", env_config=CFG)
    agent = load_agent(tmp_path / "a", device="cpu")
    assert {p.device.type for p in agent.model.policy.parameters()} == {"cpu"}
    for _ in range(30):
        obs, masks = venv.engine.observe()
        a1, _ = model.predict(obs, action_masks=masks, deterministic=True)
        a2, _ = agent.model.predict(obs, action_masks=masks, deterministic=True)
        np.testing.assert_array_equal(a1, a2)
        venv.step(a1)


TINY = ["--trace-jobs", "1500", "--num-jobs", "16", "--max-slots", "8", "--num-envs", "2", "--n-steps", "32",
        "--batch-size", "64", "--n-epochs", "1", "--eval-windows", "1", "--eval-seeds", "1", "--eval-every", "0",
        "--action-mode", "pick", "--algo", "maskable_ppo", "--no-preemption", "--total-timesteps", "64"]


@no_cuda
def test_train_with_device_auto_runs_on_the_cpu_and_logs_it(tmp_path, capsys) -> None:
    train.main([*TINY, "--output", str(tmp_path / "run"), "--device", "auto"])
    assert "device auto: CUDA is not available on this machine, using the CPU" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "args.json").read_text())["device"] == "auto"
    agent = load_agent(tmp_path / "run" / "agent")
    assert {p.device.type for p in agent.model.policy.parameters()} == {"cpu"}


@no_cuda
def test_train_refuses_cuda_on_a_machine_without_it(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--device: device 'cuda': CUDA is not available"):
        train.main([*TINY, "--output", str(tmp_path / "run"), "--device", "cuda"])


@needs_cuda
def test_training_runs_on_the_gpu(tmp_path) -> None:
    train.main([*TINY, "--output", str(tmp_path / "run"), "--device", "cuda"])
    agent = load_agent(tmp_path / "run" / "agent", device="cuda")
    assert {p.device.type for p in agent.model.policy.parameters()} == {"cuda"}
