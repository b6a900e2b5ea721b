"""train.py's checkpoints and resume: the saved arguments, crash-safe checkpoint swaps, and a
stopped or killed run that, resumed, equals the uninterrupted run with the same seed."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import baselines
import train
from agents import load_agent

torch.set_num_threads(1)
#: a tiny run: rollouts of 32 steps x 4 envs = 128 steps
TINY = ["--trace-jobs", "1500", "--num-jobs", "16", "--max-slots", "8", "--num-envs", "4", "--n-steps", "32",
        "--batch-size", "64", "--n-epochs", "1", "--eval-windows", "2", "--eval-seeds", "1"]
#: evaluations every 192 steps and checkpoints every 256: neither divides nor is a rollout
RUN = [*TINY, "--eval-every", "192", "--checkpoint-every", "256"]
TOTAL = 640
#: the columns of progress.csv that measure the wall clock
WALL_CLOCK = ["time/fps", "time/time_elapsed"]


def run(argv: list[str], stop_at: int | None = None) -> pd.DataFrame:
    """``train.main(argv)`` judging only two baselines at the end (the table's size is not what
    these tests are about); with ``stop_at``, a stop is requested at the first step at or after
    it, as SIGINT/SIGTERM's handler does."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines, "names", lambda: ["fifo", "tiresias"])
        if stop_at is not None:
            on_step = train.TrainingMonitor._on_step

            def stop_then_step(self) -> bool:
                if self.model.num_timesteps >= stop_at:
                    self.stop_requested = True
                return on_step(self)

            mp.setattr(train.TrainingMonitor, "_on_step", stop_then_step)
        return train.main(argv)


def outputs(out: Path) -> dict:
    """What a run leaves: the last model's parameters and steps, the agent kept (the best on
    validation), and its logs (no wall clock)."""
    last, agent = load_agent(out / "agent_last").model, load_agent(out / "agent").model
    return {
        "params": {k: v.clone() for k, v in last.policy.state_dict().items()},
        "num_timesteps": last.num_timesteps,
        "agent": {k: v.clone() for k, v in agent.policy.state_dict().items()},
        "agent_timesteps": agent.num_timesteps,
        # SB3 orders the columns it adds by a set's order, which differs from process to process
        "progress": pd.read_csv(out / "progress.csv").drop(columns=WALL_CLOCK).sort_index(axis=1),
        "episodes": pd.read_csv(out / "episodes.csv"),
        "eval": pd.read_csv(out / "eval.csv"),
        "results": pd.read_csv(out / "results.csv"),
    }


def assert_same_run(a: dict, b: dict) -> None:
    assert (a["num_timesteps"], a["agent_timesteps"]) == (b["num_timesteps"], b["agent_timesteps"])
    for params in ("params", "agent"):
        assert a[params].keys() == b[params].keys()
        for k in a[params]:
            torch.testing.assert_close(a[params][k], b[params][k], rtol=0, atol=0, msg=k)
    for name in ("progress", "episodes", "eval", "results"):
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run([*RUN, "--output", str(out), "--total-timesteps", str(TOTAL)])
    return outputs(out)


def test_stopped_and_resumed_run_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    out = tmp_path / "run"
    # a stop asked for mid-rollout takes effect at the next rollout boundary (384, between two
    # periodic checkpoints), after that boundary's evaluation
    assert run([*RUN, "--output", str(out), "--total-timesteps", str(TOTAL)], stop_at=300).empty
    state = pickle.loads((out / "checkpoints" / "last" / "state.pkl").read_bytes())
    assert state["num_timesteps"] == 384 == load_agent(out / "agent").model.num_timesteps
    assert list(pd.read_csv(out / "eval.csv")["step"]) == [256, 384]
    run(["--resume", str(out)])  # to the saved total
    resumed = outputs(out)
    assert resumed["num_timesteps"] == TOTAL
    assert list(resumed["eval"]["step"]) == [256, 384, TOTAL]
    assert resumed["progress"]["time/iterations"].tolist() == [1, 2, 3, 4, 5]
    assert_same_run(resumed, uninterrupted)


def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    """SIGKILL after the first periodic checkpoint (any later point resumes the same way): the
    resume drops the rows logged after the checkpoint and recomputes them identically."""
    out = tmp_path / "run"
    cmd = [sys.executable, "train.py", *RUN, "--output", str(out), "--total-timesteps", "100000"]
    proc = subprocess.Popen(cmd, cwd=Path(train.__file__).parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "CLUSTERGYM_TORCH_THREADS": "1"})
    state_file = out / "checkpoints" / "last" / "state.pkl"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                if pickle.loads(state_file.read_bytes())["num_timesteps"] >= 256:
                    break
            except (OSError, EOFError, pickle.UnpicklingError):
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    checkpoint = train.find_checkpoint(out)
    steps = pickle.loads((checkpoint / "state.pkl").read_bytes())["num_timesteps"]
    assert 256 <= steps < TOTAL, "killed before the end of the run being compared"
    run(["--resume", str(out), "--total-timesteps", str(TOTAL)])
    assert_same_run(outputs(out), uninterrupted)


def test_resume_trains_to_the_saved_total(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    saved = {**vars(train.parse_args([*RUN, "--output", str(out)])), "total_timesteps": 60_000}
    (out / "args.json").write_text(json.dumps(saved))

    def resumed(*flags: str) -> train.Args:
        argv = ["--resume", str(out), *flags]
        return train.resumed_args(out, train.parse_args(argv), train.given_flags(argv))

    assert resumed().total_timesteps == 60_000  # not the command line's default
    assert resumed().num_envs == 4 and resumed().resume == str(out)
    assert resumed("--total-timesteps", "90000").total_timesteps == 90_000
    assert json.loads((out / "args.json").read_text())["total_timesteps"] == 90_000, "a later resume keeps it"
    assert resumed().total_timesteps == 90_000
    assert resumed("--num-envs", "4").num_envs == 4  # repeating a saved value is fine
    with pytest.raises(SystemExit, match="--seed 3 differs from its 0"):
        resumed("--seed", "3")
    (out / "args.json").write_text(json.dumps({**saved, "colour": "red"}))
    with pytest.raises(SystemExit, match=r"args.json: .*unknown \['colour'\]"):
        resumed()
    with pytest.raises(SystemExit, match=r"no args\.json"):
        train.resumed_args(tmp_path, train.parse_args(["--resume", str(tmp_path)]), {"resume"})


def test_resume_uses_the_old_checkpoint_when_a_swap_was_cut_short(tmp_path):
    """A kill between the renames of a checkpoint swap leaves ``old`` (and a whole ``tmp``, not
    trusted): the resume continues from ``old``, keeps no duplicate rows, and the next save
    replaces it."""
    out = tmp_path / "run"
    run([*TINY, "--output", str(out), "--eval-every", "0", "--total-timesteps", "384"], stop_at=1)
    ckpt = out / "checkpoints"
    assert pickle.loads((ckpt / "last" / "state.pkl").read_bytes())["num_timesteps"] == 128
    shutil.copytree(ckpt / "last", ckpt / "tmp")
    (ckpt / "tmp" / "model.zip").write_bytes(b"cut short")
    (ckpt / "last").rename(ckpt / "old")
    # a row a later, lost checkpoint would have covered, and one cut short by the kill
    header = (out / "progress.csv").read_text().splitlines()[0].split(",")
    row = ",".join("99999" if key == "time/total_timesteps" else "1" for key in header)
    with open(out / "progress.csv", "a") as f:
        f.write(f"{row}\n{row[:-3]}")
    run(["--resume", str(out)])
    assert not (ckpt / "old").exists() and not (ckpt / "tmp").exists()
    assert pickle.loads((ckpt / "last" / "state.pkl").read_bytes())["num_timesteps"] == 384
    progress = pd.read_csv(out / "progress.csv")["time/total_timesteps"].tolist()
    assert progress == [128, 256, 384]


def test_a_run_without_a_checkpoint_is_refused_not_restarted(tmp_path):
    out = tmp_path / "run"
    run([*TINY, "--output", str(out), "--eval-every", "0", "--total-timesteps", "128"])
    shutil.rmtree(out / "checkpoints")
    with pytest.raises(SystemExit, match=r"no whole checkpoint .* progress.csv, eval.csv hold rows: resuming would repeat them"):
        train.main(["--resume", str(out)])
    with pytest.raises(SystemExit, match="holds the logs of a run"):
        train.main([*TINY, "--output", str(out)])
    # killed before its first checkpoint (step 0): nothing logged, so it starts again at step 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(out / "args.json", fresh / "args.json")
    (fresh / "progress.csv").touch()
    run(["--resume", str(fresh)])
    assert load_agent(fresh / "agent").model.num_timesteps == 128
    assert pd.read_csv(fresh / "progress.csv")["time/total_timesteps"].tolist() == [128]


class Killed(Exception):
    """Stands for a kill at one file operation."""


def save_killed_at(op_number: int, model, out: Path, venv, monkeypatch) -> bool:
    """``train.save_checkpoint`` killed at its ``op_number``-th rename or removal (a removal
    killed half-way, with one file gone); whether the kill happened."""
    rename, rmtree = Path.rename, shutil.rmtree
    ops = 0

    def op() -> None:
        nonlocal ops
        ops += 1
        if ops == op_number:
            raise Killed

    def cut_rmtree(path, *args, **kwargs) -> None:
        if ops + 1 == op_number and Path(path).is_dir():
            next(iter(sorted(Path(path).iterdir()))).unlink()
        op()
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(Path, "rename", lambda self, target: (op(), rename(self, target))[1])
    monkeypatch.setattr(shutil, "rmtree", cut_rmtree)
    try:
        train.save_checkpoint(model, out, venv)
    except Killed:
        return True
    finally:
        monkeypatch.undo()
    return False


def test_checkpoint_swaps_survive_a_kill_at_every_point(tmp_path, monkeypatch):
    """A kill at any file operation of a checkpoint swap leaves a whole checkpoint, the
    previous one or the new one."""
    from agents import make_model
    from envs import EnvConfig
    from envs.sb3 import GpuClusterVecEnv

    cfg = EnvConfig(num_jobs=16, max_slots=8, trace_jobs=1500, action_mode="priority")
    venv = GpuClusterVecEnv(2, seed=0, config=cfg)
    model = make_model("ppo", "slot", venv, cfg, n_steps=8, batch_size=16)
    model.learn(16)
    kills = 0
    for k, only_old in itertools.product(range(1, 8), (False, True)):
        out = tmp_path / f"{k}{only_old}"
        model.num_timesteps = 1
        train.save_checkpoint(model, out, venv)
        train.save_checkpoint(model, out, venv)  # a swap over a previous checkpoint
        if only_old:  # as a kill between the renames left it, and a resume from it goes on
            (out / "checkpoints" / "last").rename(out / "checkpoints" / "old")
        model.num_timesteps = 2
        kills += save_killed_at(k, model, out, venv, monkeypatch)
        found = train.find_checkpoint(out)
        assert found is not None, f"no whole checkpoint after a kill at operation {k} (only old: {only_old})"
        state = pickle.loads((found / "state.pkl").read_bytes())
        assert state["num_timesteps"] in (1, 2)
        assert type(model).load(found / "model.zip", device="cpu").num_timesteps == state["num_timesteps"]
    assert kills >= 8, "the renames and removals of a swap were each cut"


def test_truncated_logs_keep_their_rows_byte_for_byte(tmp_path):
    path = tmp_path / "log.csv"
    text = "step,a,b\r\n128,1.50,\r\n256,2.0,x\r\n384,3.0,y\r\n512,4"
    path.write_bytes(text.encode())
    train.truncate_csv(path, "step", 256)
    assert path.read_bytes() == b"step,a,b\r\n128,1.50,\r\n256,2.0,x\r\n"
    train.truncate_csv(path, "step", 10_000)
    assert path.read_bytes() == b"step,a,b\r\n128,1.50,\r\n256,2.0,x\r\n"
    np.testing.assert_array_equal(pd.read_csv(path)["step"], [128, 256])
