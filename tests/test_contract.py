"""The contract every registered baseline keeps, checked over ``baselines.names()``.

For each baseline: its knobs round-trip (``get(name, **get(name).knobs())`` is the same policy)
and an unknown knob is a ``TypeError``; a replay of a small synthetic trace finishes every job,
none before its submit time plus its run time alone; a decision never changes the view it reads
(policies do not mutate simulator state); and, with every job visible and matching options, the
decisions it makes through :func:`baselines.act` in the vector env give the same per-job start
and finish times as :func:`envs.simulate`, where the env can express them.
"""

from __future__ import annotations

from dataclasses import fields

import gymnasium as gym
import numpy as np
import pytest
from episodes import play_episodes

import baselines
import envs  # noqa: F401  (registers GpuCluster-v0)
from envs import simulate
from traces import synthetic

NAMES = baselines.names()

# the simulator models a baseline is about (its paper's setting); the rest run the plain model
SETTINGS: dict[str, dict] = {
    "synergy": {"resources": True},
    "synergy_greedy": {"resources": True},
    "synergy_proportional": {"resources": True},
    "cassini": {"network": True},
}

# decisions the vector env cannot express (see baselines.adapter); knobs bring the rest in line
ENV_KNOBS: dict[str, dict] = {"tiresias": {"preempt": "round"}}
ENV_CANNOT: dict[str, str] = {
    "srtf": "preemption at every event (the env preempts only at round boundaries)",
    "heet": "preemption between round boundaries (trades move running jobs at arrivals and completions)",
    "lucid": "GPU sharing (packed pairs, Allocation.partner)",
}


def trace(seed: int = 5, jobs: int = 30):
    return synthetic(jobs, load=1.5, cluster="tiny", seed=seed, duration_range=(10, 20000))


def replay(name: str, policy=None, **options):
    policy = baselines.get(name) if policy is None else policy
    opts = {"known_durations": policy.needs_durations, **SETTINGS.get(name, {}), **options}
    return simulate(trace(), "tiny", policy, **opts)


# ---------------------------------------------------------------------------------- knobs
@pytest.mark.parametrize("name", NAMES)
def test_knobs_round_trip(name):
    policy = baselines.get(name)
    knobs = policy.knobs()
    again = baselines.get(name, **knobs)
    assert type(again) is type(policy)
    assert again.knobs() == knobs
    assert repr(again) == repr(policy)
    assert set(knobs) == {f.name for f in fields(type(policy).Knobs) if f.init}
    with pytest.raises(TypeError, match="no_such_knob"):
        baselines.get(name, no_such_knob=1)


# ---------------------------------------------------------------------------------- replay
@pytest.mark.parametrize("name", NAMES)
def test_replay_finishes_every_job_no_sooner_than_alone(name):
    res = replay(name)
    jobs = res.jobs
    assert res.metrics["unfinished"] == 0
    assert np.isfinite(jobs["finish"]).all()
    assert (jobs["first_start"] >= jobs["submit"]).all()
    # on the one-type reference cluster a rigid job alone runs for exactly its duration
    assert (jobs["finish"] >= jobs["submit"] + jobs["duration"] - 1e-6).all()


# ---------------------------------------------------------------------------------- read-only view
def _snapshot(view) -> dict[str, np.ndarray]:
    out = {}
    for attr in dir(type(view)):
        if attr.startswith("_") or not isinstance(getattr(type(view), attr), property):
            continue
        try:
            value = getattr(view, attr)
        except PermissionError:  # durations hidden from this policy
            continue
        if isinstance(value, np.ndarray):
            out[attr] = value.copy()
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


@pytest.mark.parametrize("name", NAMES)
def test_decisions_leave_the_view_unchanged(name):
    policy = baselines.get(name)
    decide = policy.decide
    checked = []

    def watched(view):
        before = _snapshot(view)
        decision = decide(view)
        after = _snapshot(view)
        changed = [k for k in before if not _same(before[k], after[k])]
        assert not changed, f"{name} changed view.{changed} while deciding"
        checked.append(len(before))
        return decision

    policy.decide = watched
    replay(name, policy)
    assert checked and min(checked) > 10


# ---------------------------------------------------------------------------------- env = simulate
def run_vector(name: str, round_length: float, known: bool, num_envs: int = 2):
    tr = trace()
    env = gym.make_vec("GpuCluster-v0", num_envs=num_envs, trace=tr, num_jobs=len(tr), load=None,
                       cluster="tiny", action_mode="priority", preemption=True, round_length=round_length,
                       restart_overhead=30.0, max_slots=len(tr), known_durations=known, **SETTINGS.get(name, {}))
    return play_episodes(env, baselines.get(name, **ENV_KNOBS.get(name, {})), num_envs)


@pytest.mark.parametrize("name", NAMES)
def test_vector_env_makes_the_same_decisions_as_simulate(name):
    if name in ENV_CANNOT:
        pytest.skip(f"the env cannot express {name}'s {ENV_CANNOT[name]}")
    policy = baselines.get(name, **ENV_KNOBS.get(name, {}))
    rl = policy.round_length or 300.0
    known = policy.needs_durations
    expected = replay(name, policy, round_length=rl, restart_overhead=30.0).jobs
    for jobs in run_vector(name, rl, known):
        np.testing.assert_allclose(jobs["first_start"], expected["first_start"])
        np.testing.assert_allclose(jobs["finish"], expected["finish"])
