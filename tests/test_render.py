"""Render modes of the env (text and image views of the cluster's state) and the replay timeline
(GPUs busy, jobs queued, Gantt chart), checked against the simulator's own state and results."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import matplotlib.image as mpimg
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 (registers GpuCluster-v0)
from baselines.__main__ import main
from envs.core import RUNNING, WAITING
from envs.gpu_cluster import GpuClusterEnv, GpuClusterVectorEnv
from envs.plots import busy_gpus, integrate, plot_timeline, queued_jobs, simulate_with_timeline
from envs.simulate import simulate
from traces import clusters, synthetic

OPTS = {"cluster": "tiny", "num_jobs": 48, "load": 3.0, "trace_jobs": 2000}


def busy_steps(env, n: int, seed: int = 0):
    """Yield after each of ``n`` steps of a fixed rule: advance for the first 20 steps (a queue
    builds), then start the newest startable visible job, else advance."""
    env.reset(seed=seed)
    for i in range(n):
        mask = env.unwrapped.action_masks()
        starts = np.flatnonzero(mask[:-1])
        env.step(int(starts[-1]) if len(starts) and (i >= 20 or not mask[-1]) else len(mask) - 1)
        yield


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = "head"
    for line in text.splitlines():
        m = re.match(r"(nodes|running|queue)\b", line)
        if m:
            key = m.group(1)
            out[key] = [line]
        else:
            out.setdefault(key, []).append(line)
    return out


def test_ansi_names_running_jobs_and_counts_free_gpus():
    env = gym.make("GpuCluster-v0", render_mode="ansi", known_durations=True, **OPTS)
    core = env.unwrapped.engine.core
    checked_queue = False
    for _ in busy_steps(env, 60):
        text = env.render()
        assert isinstance(text, str)
        parts = sections(text)
        cells = [c for line in parts["nodes"][1:] for c in line[line.index("[") + 1 : line.index("]")].split()]
        assert len(cells) == core.total_gpus
        assert cells.count(".") == int(core.free[0].sum())
        assert f"GPUs free {int(core.free[0].sum())}/{core.total_gpus}" in parts["head"][0]
        running = core.s_job[0][core.s_status[0] == RUNNING]
        shown = {int(x) for x in re.findall(r"^\s+j(\d+)\s", "\n".join(parts["running"][1:]), flags=re.MULTILINE)}
        assert shown == set(running.tolist())
        for j in running:  # each running job fills as many cells as it holds GPUs
            slot = np.flatnonzero(core.s_job[0] == j)[0]
            assert cells.count(str(j)) == core.s_n[0, slot]
        waiting = int((core.s_status[0] == WAITING).sum())
        assert f"queue ({waiting} waiting)" in parts["queue"][0]
        if waiting > 8:
            # the first queued jobs in the agent's order, then a count of the rest
            vis = env.unwrapped.engine.visible[0]
            first = [int(core.s_job[0, s]) for s in vis if core.s_status[0, s] == WAITING][:8]
            listed = [int(x) for x in re.findall(r"^\s+j(\d+)\s", "\n".join(parts["queue"][1:]), flags=re.MULTILINE)]
            assert listed == first
            assert f"... and {waiting - 8} more" in parts["queue"][-1]
            checked_queue = True
    assert checked_queue, "the rule never built a queue longer than the listed part"
    assert "remaining" in env.render()


def test_rgb_array_is_an_image_that_follows_the_state():
    env = gym.make("GpuCluster-v0", render_mode="rgb_array", **OPTS)
    frames = []
    for i, _ in enumerate(busy_steps(env, 30)):
        if i in (0, 29):
            frames.append(env.render())
    for f in frames:
        assert f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 and f.shape[:2] == (360, 640)
    assert not np.array_equal(frames[0], frames[1])
    # same state, same image
    env.reset(seed=0)
    first = env.render()
    env.reset(seed=0)
    assert np.array_equal(first, env.render())


def test_render_modes_follow_gymnasium_conventions():
    assert set(GpuClusterEnv.metadata["render_modes"]) == {"ansi", "rgb_array"}
    assert GpuClusterEnv.metadata["render_fps"] > 0
    assert GpuClusterEnv(**OPTS).render() is None  # no mode: nothing drawn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the passive checker warns on any convention it finds broken
        env = gym.make("GpuCluster-v0", render_mode="ansi", **OPTS)
        env.reset(seed=0)
        env.render()
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        GpuClusterEnv(render_mode="human", **OPTS)
    # Gymnasium's full checker, render modes included (it makes the other modes from the spec)
    check_env(gym.make("GpuCluster-v0", render_mode="ansi", **OPTS).unwrapped, skip_render_check=False)


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
@pytest.mark.parametrize("maker", [lambda m: GpuClusterEnv(render_mode=m, **OPTS),
                                   lambda m: gym.make("GpuCluster-v0", render_mode=m, **OPTS),
                                   lambda m: GpuClusterVectorEnv(2, render_mode=m, **OPTS)])
def test_invalid_render_mode_is_a_clear_error(maker):
    # ("human" through gym.make gets Gymnasium's HumanRendering wrapper over rgb_array)
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        maker("video")


def test_vector_env_renders_every_env():
    vec = gym.make_vec("GpuCluster-v0", num_envs=3, render_mode="ansi", **OPTS)
    vec.reset(seed=0)
    frames = vec.render()
    assert isinstance(frames, tuple) and len(frames) == 3
    single = GpuClusterEnv(render_mode="ansi", **OPTS)
    single.reset(seed=1)
    assert frames[1] == single.render()  # env i of the vector env is the single env seeded seed + i


@pytest.fixture(scope="module")
def spec():
    return clusters.get("tiny")


@pytest.fixture(scope="module")
def trace(spec):
    return synthetic(60, load=1.5, cluster=spec, seed=3)


@pytest.mark.parametrize("policy", ["fifo", "tiresias", "gandiva"])
def test_timeline_matches_the_per_job_results(trace, spec, policy):
    res = simulate_with_timeline(trace, spec, policy)
    plain = simulate(trace, spec, policy)
    assert res.metrics == plain.metrics  # recording changes nothing
    jobs, seg = res.jobs, res.info["timeline"]
    t0 = float(jobs["submit"].min())
    t, busy = busy_gpus(seg, t0)
    # GPU-seconds: the busy curve's integral, each job's intervals, against the per-job table
    assert integrate(t, busy) == pytest.approx(jobs["gpu_seconds"].sum(), rel=1e-9)
    per_job = ((seg["end"] - seg["start"]) * seg["gpus"]).groupby(seg["job"]).sum()
    np.testing.assert_allclose(per_job.reindex(range(len(jobs))).to_numpy(), jobs["gpu_seconds"].to_numpy(), rtol=1e-9)
    assert busy.max() <= spec.num_gpus
    first = seg.groupby("job")["start"].min()
    np.testing.assert_array_equal(first.to_numpy(), jobs["first_start"].to_numpy()[first.index])
    last = seg.groupby("job")["end"].max()
    np.testing.assert_array_equal(last.to_numpy(), jobs["finish"].to_numpy()[last.index])
    if policy == "fifo":  # never preempts: one interval per job, first start to finish
        assert len(seg) == len(jobs)
        assert integrate(t, busy) == pytest.approx(
            (jobs["num_gpus"] * (jobs["finish"] - jobs["first_start"])).sum(), rel=1e-9)
    else:
        # a job's intervals are separated only where it was taken off its GPUs
        gaps = (seg["start"].to_numpy()[1:] > seg["end"].to_numpy()[:-1]) & (seg["job"].to_numpy()[1:] == seg["job"].to_numpy()[:-1])
        assert 0 < gaps.sum() <= jobs["preemptions"].sum()
    tq, queued = queued_jobs(jobs, seg, t0)
    assert queued.min() == 0 and queued[-1] == 0
    # a job queues from its submission to its first start at least
    assert integrate(tq, queued) >= jobs["queueing_delay"].sum() - 1e-6


def test_plot_timeline_from_a_plain_result(trace, spec, tmp_path):
    res = simulate(trace, spec, "fifo")
    fig = plot_timeline(res, tmp_path / "plain.png", size=(6, 4), dpi=50)
    assert mpimg.imread(tmp_path / "plain.png").shape[:2] == (200, 300)
    assert "preemptions not shown" in fig.texts[0].get_text()


def test_plot_option_writes_a_png(tmp_path, capsys):
    out = tmp_path / "timeline.png"
    assert main(["--policy", "tiresias", "--cluster", "tiny", "--num-jobs", "40", "--load", "1.5", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(out).shape[:2] == (750, 1000)
    assert f"timeline: {out}" in capsys.readouterr().out
