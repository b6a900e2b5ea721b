"""The Ray extra (``pip install -e ".[ray]"``): the leaderboard's Ray backend gives the local
backend's outputs byte for byte, shares its cache and resumes a killed driver; the train.py sweep
reads its metric by name; the RLlib example trains with masked actions on the native vector env.
One local Ray instance (2 CPUs, loopback) serves the whole file."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason='the Ray extra is not installed (pip install -e ".[ray]")')

import leaderboard  # noqa: E402
from leaderboard import runner  # noqa: E402
from leaderboard.__main__ import main as leaderboard_main  # noqa: E402
from leaderboard.suite import load_suite  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# 3 policies x 2 loads x 2 seeds = 12 cells of 40 jobs
SUITE = """
name = "raytiny"
seeds = [0, 1]
loads = [1.0, 2.0]
policies = ["fifo", "srtf", "tiresias"]

[cluster]
preset = "tiny"

[trace]
kind = "synthetic"
num_jobs = 40
"""
CELLS = 12


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance of this machine only: 2 CPUs, on the loopback interface, no dashboard."""
    # the workers import the example and the sweep as this process does (examples/, benchmarks/)
    path = os.pathsep.join([str(ROOT / "examples"), str(ROOT / "benchmarks"), str(ROOT),
                            *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": path}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "raytiny.toml"
    path.write_text(SUITE)
    return path


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file but ``timing.csv`` (wall times), and the set of cached cell keys."""
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "timing.csv"}
    files["cells/"] = "\n".join(sorted(p.name for p in (out / "cells").glob("*.parquet"))).encode()
    return files


@pytest.fixture(scope="module")
def local_reference(suite_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    summary = leaderboard.run(load_suite(suite_path), out=out, workers=1)
    assert (summary.computed, summary.failed) == (CELLS, [])
    return out


def test_ray_backend_outputs_equal_the_local_backend_byte_for_byte(local_ray, suite_path, local_reference, tmp_path):
    summary = leaderboard.run(load_suite(suite_path), out=tmp_path, backend="ray")
    assert (summary.cells, summary.cached, summary.computed, summary.failed) == (CELLS, 0, CELLS, [])
    mine, reference = outputs(tmp_path), outputs(local_reference)
    assert {"leaderboard.md", "cells.csv", "jobs.csv.gz", "avg_jct_vs_fifo.png"} <= set(mine)
    assert mine.keys() == reference.keys()
    differ = [name for name in mine if mine[name] != reference[name]]
    assert not differ, f"outputs that differ between the backends: {differ}"
    # each cell file verifies against its checksum and holds the same job table as the local one
    cells = load_suite(suite_path).cells(load_suite(suite_path).policy_specs(None, []))
    for c in cells[:3]:
        a = runner.read_cell(c, runner.cell_path(tmp_path / "cells", c))
        b = runner.read_cell(c, runner.cell_path(local_reference / "cells", c))
        pd.testing.assert_frame_equal(a.jobs, b.jobs)
        assert a.metrics == b.metrics


def test_ray_backend_computes_only_what_the_local_cache_lacks(local_ray, suite_path, local_reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells").mkdir()
    for p in (local_reference / "cells").iterdir():
        (out / "cells" / p.name).write_bytes(p.read_bytes())
    victims = sorted((out / "cells").glob("*.parquet"))[:3]
    for v in victims:
        runner.remove_cell_file(v)
    summary = leaderboard.run(load_suite(suite_path), out=out, backend="ray")
    assert (summary.cached, summary.computed, summary.failed) == (CELLS - 3, 3, [])
    assert outputs(out) == outputs(local_reference)


def test_killed_driver_resumes_from_the_cache(local_ray, suite_path, local_reference, tmp_path):
    """SIGKILL the CLI driving the cluster mid-run: Ray frees the CPUs its tasks held, and the
    rerun computes only the missing cells, to the same outputs."""
    out = tmp_path / "out"
    env = {**os.environ, runner.DELAY_ENV: "1.0"}
    proc = subprocess.Popen([sys.executable, "-m", "leaderboard", "run", str(suite_path), "--out", str(out),
                             "--backend", "ray", "--address", local_ray, "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("cells/*.parquet"))) < 2:
            assert proc.poll() is None, f"the run ended before 2 cells were cached: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no 2 cells cached within 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    deadline = time.monotonic() + 120
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, f"the killed driver's tasks still hold CPUs: {ray.available_resources()}"
        time.sleep(0.2)
    cached = len(list((out / "cells").glob("*.parquet")))
    assert 2 <= cached < CELLS
    resumed = leaderboard.run(load_suite(suite_path), out=out, backend="ray")
    assert (resumed.cached, resumed.computed, resumed.failed) == (cached, CELLS - cached, [])
    assert outputs(out) == outputs(local_reference)


def test_cli_backend_options_are_checked(local_ray, suite_path, tmp_path, capsys):
    run = ["run", str(suite_path), "--out", str(tmp_path), "--no-progress"]
    assert leaderboard_main([*run, "--backend", "ray", "--workers", "2"]) == 2
    assert "--workers applies to the local backend" in capsys.readouterr().err
    assert leaderboard_main([*run, "--address", "auto"]) == 2
    assert "apply to --backend ray" in capsys.readouterr().err
    assert leaderboard_main([*run, "--backend", "ray", "--cpus-per-cell", "0"]) == 2
    assert "--cpus-per-cell must be > 0, got 0" in capsys.readouterr().err
    assert leaderboard_main([*run, "--backend", "ray", "--cpus-per-cell", "3"]) == 2
    assert "--cpus-per-cell 3: no node of the Ray cluster has that many CPUs (CPUs per node: 2)" \
        in capsys.readouterr().err
    assert not list(tmp_path.glob("cells/*.parquet"))


MULTI_NODE = """
import json, sys
from ray.cluster_utils import Cluster
import leaderboard
from leaderboard.suite import load_suite
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    s = leaderboard.run(load_suite(sys.argv[1]), out=sys.argv[2], backend="ray", address=cluster.address)
    print(json.dumps({"cells": s.cells, "computed": s.computed, "failed": len(s.failed), "nodes": s.nodes}))
finally:
    cluster.shutdown()
"""


def test_a_two_node_cluster_shares_the_cells_and_gives_the_same_outputs(suite_path, local_reference, tmp_path):
    """Two Ray nodes (separate raylets and object stores, 1 CPU each) behind one head address, as
    on two machines: the driver reaches them by ``address`` only, both compute cells, and the
    outputs equal the local backend's. In a child process, apart from this file's Ray instance;
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps every Ray process on the loopback interface."""
    out = tmp_path / "out"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MULTI_NODE, str(suite_path), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["cells"], report["computed"], report["failed"]) == (CELLS, CELLS, 0)
    assert len(report["nodes"]) == 2 and sum(report["nodes"].values()) == CELLS, report["nodes"]
    assert outputs(out) == outputs(local_reference)


# ------------------------------------------------------------------------------------ sweep
def test_sweep_reads_the_metric_by_name_and_falls_back(tmp_path):
    import sweep_ray

    path = tmp_path / "eval.csv"
    assert sweep_ray.read_metric(path)["note"] == "no eval.csv" and math.isnan(sweep_ray.read_metric(path)[sweep_ray.METRIC])
    # older train.py: no split column, the last row counts
    path.write_text("step,agent_avg_jct,fifo_avg_jct\n100,5.0,9.0\n200,4.0,9.0\n")
    got = sweep_ray.read_metric(path)
    assert (got["agent_avg_jct"], got["metric_step"], got["eval/fifo_avg_jct"], got["note"]) == (4.0, 200, 9.0, "")
    # with splits: the last validation row, never a test row
    path.write_text("step,split,agent_avg_jct\n100,validation,5.0\n200,validation,3.0\n200,test,1.0\n")
    got = sweep_ray.read_metric(path)
    assert (got["agent_avg_jct"], got["metric_split"], got["metric_step"]) == (3.0, "validation", 200)
    # a renamed column is found if it is the only one containing the name
    path.write_text("step,split,val_agent_avg_jct\n100,validation,7.0\n")
    got = sweep_ray.read_metric(path)
    assert got["agent_avg_jct"] == 7.0 and got["metric_column"] == "val_agent_avg_jct"
    path.write_text("step,jct\n100,7.0\n")
    got = sweep_ray.read_metric(path)
    assert math.isnan(got["agent_avg_jct"]) and "columns: step, jct" in got["note"]


def test_sweep_grid_and_summary():
    import sweep_ray

    grid = sweep_ray.parse_grid(["learning-rate=1e-4,3e-4", "hidden=32"])
    assert grid == {"learning_rate": [1e-4, 3e-4], "hidden": [32]}
    with pytest.raises(ValueError, match=r"train\.py has no argument --nonsense"):
        sweep_ray.parse_grid(["nonsense=1"])
    with pytest.raises(ValueError, match="--seed is set by the sweep"):
        sweep_ray.parse_grid(["seed=1,2"])
    trials = sweep_ray.configs([0, 1], grid)
    assert len(trials) == 4 and len({sweep_ray.trial_name(t) for t in trials}) == 4
    argv = sweep_ray.train_argv({"hidden": 32, "normalize_reward": False, "seed": 1}, ["--n-steps", "8"], Path("o"))
    assert argv == ["--n-steps", "8", "--hidden", "32", "--no-normalize-reward", "--seed", "1", "--output", "o"]
    table = pd.DataFrame({"hidden": [32, 32, 64], "seed": [0, 1, 0], "agent_avg_jct": [10.0, 14.0, 5.0]})
    summary = sweep_ray.summarize(table, ["hidden"])
    first = summary.iloc[0]
    # mean 12, sd 2.828, t(0.975, 1) = 12.706: half-width 12.706 * 2.828 / sqrt(2) = 25.41
    assert first["agent_avg_jct_mean"] == 12.0 and first["agent_avg_jct_ci95"] == pytest.approx(25.41, abs=0.01)
    assert math.isnan(summary.iloc[1]["agent_avg_jct_ci95"])


def test_two_trial_sweep_end_to_end(local_ray, tmp_path):
    """Two Ray Tune trials of train.py (seeds 0 and 1; judged against FIFO and SRTF only, to keep
    them short): each row is its run's last validation figure, and a rerun reads them back."""
    import sweep_ray
    from test_agents import TINY

    base = [*TINY, "--total-timesteps", "1024", "--eval-every", "512", "--baselines", "fifo,srtf",
            "--baseline-cache", str(tmp_path / "baselines")]
    table = sweep_ray.sweep([0, 1], {}, base, tmp_path)
    assert list(table["seed"]) == [0, 1] and set(table["status"]) == {"trained"}
    for _, row in table.iterrows():
        eval_csv = pd.read_csv(Path(row["folder"]) / "eval.csv")
        if "split" in eval_csv.columns:
            eval_csv = eval_csv[eval_csv["split"] == "validation"]
        assert row["agent_avg_jct"] == eval_csv["agent_avg_jct"].iloc[-1]
    assert pd.read_csv(tmp_path / "results.csv")["agent_avg_jct"].tolist() == table["agent_avg_jct"].tolist()
    again = sweep_ray.sweep([0, 1], {}, base, tmp_path)  # finished trials are read, not retrained
    assert set(again["status"]) == {"cached"} and again["agent_avg_jct"].tolist() == table["agent_avg_jct"].tolist()


# ------------------------------------------------------------------------------------ RLlib
def test_masked_vector_env_resets_on_the_next_step_and_keeps_every_reward():
    """Random masked actions: no action is ever forbidden, each episode's rewards sum to the
    engine's own return, and the step after an end starts a new episode at time 0."""
    from rllib_gpu_cluster import MaskedVectorEnv

    env = MaskedVectorEnv(3, cluster="tiny", num_jobs=8, max_slots=4, trace_jobs=400)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    returns, ended, finished = np.zeros(3), np.zeros(3, dtype=bool), 0
    for _ in range(400):
        mask = obs["action_mask"].astype(bool)
        assert obs["observations"].shape == (3, *env.single_observation_space["observations"].shape)
        assert mask.any(axis=1).all()
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        obs, reward, term, trunc, infos = env.step(actions)
        assert (reward[ended] == 0).all() and not (term | trunc)[ended].any()
        assert (env.inner.engine.core.clock[ended] == 0).all()  # a new episode, at its start
        returns[ended] = 0.0
        returns += reward
        for i in np.flatnonzero(term | trunc):
            m = infos["episode_metrics"][i]
            assert m["invalid_actions"] == 0
            assert returns[i] == pytest.approx(m["return"], rel=1e-5)
            finished += 1
        ended = term | trunc
    assert finished >= 3


def test_rllib_ppo_trains_on_the_native_vector_env(local_ray):
    from rllib_gpu_cluster import train

    out = train(2, env_runners=1, envs_per_runner=4, rollout=64, minibatch=128, epochs=1, hidden=16,
                env_options={"num_jobs": 8, "max_slots": 4, "trace_jobs": 400})
    assert out["steps"] == 2 * 4 * 64 and out["steps_per_s"] > 0
    assert out["episodes_finished"] > 0
    assert out["episodes"]["episode_invalid_actions"] == 0  # the mask reached the module: no forbidden action
    assert out["episodes"]["episode_avg_jct"] > 0 and out["episodes"]["episode_return_mean"] < 0
