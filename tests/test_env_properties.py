"""Property tests: invariants of the simulator over random traces, clusters and actions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs import GpuClusterEnv, GpuClusterVectorEnv
from traces import clusters, models, validate

GPU_CHOICES = (1, 1, 1, 2, 4, 8)


@st.composite
def scenarios(draw):
    """A random cluster, a random trace that fits it, env options and an action seed."""
    mixed = draw(st.booleans())
    node_gpus = draw(st.sampled_from([2, 4, 8]))
    if mixed:
        groups = [("v100", draw(st.integers(1, 3)), node_gpus, 8, 64),
                  ("k80", draw(st.integers(1, 3)), node_gpus, 8, 64)]
    else:
        groups = [("v100", draw(st.integers(1, 4)), node_gpus, 8, 64)]
    spec = clusters.from_counts("random", groups)
    biggest = min(max(spec.gpus_per_type().values()), 8)
    n = draw(st.integers(4, 24))
    gpus = [min(g, biggest) for g in draw(st.lists(st.sampled_from(GPU_CHOICES), min_size=n, max_size=n))]
    gaps = draw(st.lists(st.floats(0.0, 2000.0), min_size=n, max_size=n))
    durations = draw(st.lists(st.floats(1.0, 20000.0), min_size=n, max_size=n))
    trace = pd.DataFrame({
        "job_id": [f"r{i}" for i in range(n)], "submit_time": np.cumsum(gaps), "duration": durations,
        "num_gpus": gpus, "user": "", "vc": "", "status": "", "gpu_type": "",
        "model": [models.MODELS[i % 4] if g > 1 else models.MODELS[i % len(models.MODELS)] for i, g in enumerate(gpus)],
    })
    options = dict(
        trace=validate(trace), cluster=spec, num_jobs=n, load=draw(st.sampled_from([None, 0.5, 2.0])),
        max_slots=draw(st.integers(1, 10)), action_mode=draw(st.sampled_from(["pick", "priority"])),
        preemption=draw(st.booleans()), round_length=draw(st.sampled_from([100.0, 700.0])),
        restart_overhead=draw(st.sampled_from([0.0, 30.0])), max_steps=20_000,
        elastic_fraction=draw(st.sampled_from([0.0, 0.5])),
    )
    return options, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_hold_over_whole_episodes(scenario):
    options, seed = scenario
    n_envs = 3
    env = GpuClusterVectorEnv(n_envs, **options)
    core = env.engine.core
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    finished = np.zeros(n_envs, dtype=bool)
    episode = np.zeros(n_envs, dtype=int)
    progress = {}
    for _ in range(20_000):
        assert np.isfinite(obs).all() and env.observation_space.contains(obs)
        mask = info["action_mask"]
        if options["action_mode"] == "pick":
            # mostly legal picks, some advances, some forbidden actions
            noise = rng.random(mask.shape) * mask
            actions = noise.argmax(axis=1)
            forbidden = rng.random(n_envs) < 0.1
            actions[forbidden] = rng.integers(0, mask.shape[1], size=forbidden.sum())
        else:
            actions = rng.uniform(-1, 1, size=(n_envs, env.engine.K)).astype(np.float32)
            actions[rng.random(n_envs) < 0.05, 0] = np.nan
        obs, _, term, trunc, info = env.step(actions)
        episode += term | trunc  # finished envs were reset within the step
        # no node holds more GPUs than it has; every GPU is either free or placed
        assert (core.free >= 0).all() and (core.free <= core.node_cap).all()
        placed = core.s_place.sum(axis=1)
        np.testing.assert_array_equal(core.free + placed, np.broadcast_to(core.node_cap, core.free.shape))
        running = core.s_status == 2
        np.testing.assert_array_equal(core.s_place.sum(axis=2), np.where(running, core.s_n, 0))
        # a job's progress never decreases and never exceeds its work
        active = core.s_status > 0
        assert (core.s_done[active] <= core.s_work[active] * (1 + 1e-9)).all()
        for e, s in zip(*np.nonzero(active), strict=True):
            key = (e, int(core.s_job[e, s]), int(episode[e]))
            assert core.s_done[e, s] >= progress.get(key, 0.0)
            progress[key] = core.s_done[e, s]
        done = term | trunc
        for i in np.flatnonzero(done):
            assert term[i], "every job of a window finishes within the step budget"
            m = info["final_info"][i]["episode_metrics"]
            assert m["unfinished"] == 0 and np.isfinite(m["avg_jct"])
            assert 0.0 < m["utilization"] <= 1.0 + 1e-9
        finished |= done
        if finished.all():
            break
    assert finished.all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_gpu_seconds_are_conserved_between_allocations_and_utilisation(scenario):
    options, seed = scenario
    # pick mode: time passes only on advances, so the allocation before a step held throughout
    env = GpuClusterEnv(**{**options, "action_mode": "pick"})
    core = env.engine.core
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    integral = 0.0
    for _ in range(20_000):
        mask = info["action_mask"]
        allocated, clock = int(core.s_n.sum()), float(core.clock[0])
        _, _, term, trunc, info = env.step(int((rng.random(mask.shape) * mask).argmax()))
        integral += allocated * (core.clock[0] - clock)
        if term or trunc:
            break
    assert term
    results = env.episode_results()
    m = info["episode_metrics"]
    total = results["gpu_seconds"].sum()
    assert np.isclose(total, integral, rtol=1e-9)
    assert np.isclose(total, core.gpu_seconds[0], rtol=1e-9)
    assert np.isclose(m["utilization"] * core.total_gpus * m["makespan"], total, rtol=1e-9)
