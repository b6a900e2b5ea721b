"""Behaviour cloning (agents.imitation): the teacher's targets follow the heuristic's order, and a
cloned slot policy reproduces the teacher's decisions and its average JCT in a replay."""

from __future__ import annotations

import numpy as np
import pytest

import baselines
from agents import ENV_KEYS, Agent, AgentPolicy, make_model
from agents.imitation import (
    TEACHERS,
    clone,
    demonstrations,
    pair_agreement,
    ranking_loss,
    teacher_scores,
)
from envs import EnvConfig, simulate
from envs.core import EMPTY
from envs.engine import VectorEngine
from envs.sb3 import GpuClusterVecEnv
from traces import clusters, synthetic, window

SPEC = clusters.get("tiny")
TRACE = synthetic(3000, load=1.0, cluster=SPEC, seed=3)
TRAIN, HELD = TRACE.iloc[:2400].reset_index(drop=True), TRACE.iloc[2400:].reset_index(drop=True)


def config(known: bool, order: str, every: bool, round_length: float) -> EnvConfig:
    return EnvConfig(trace=TRAIN, cluster=SPEC, num_jobs=48, load=None, max_slots=8, action_mode="priority",
                     preemption=True, round_length=round_length, known_durations=known, visible_order=order,
                     serve_hidden=True, preempt_every_event=every)


@pytest.mark.parametrize("teacher", TEACHERS)
def test_teacher_targets_rank_the_visible_jobs_by_the_rule(teacher: str) -> None:
    eng = VectorEngine(4, config(True, "arrival", False, 300.0))
    eng.seed([0, 1, 2, 3])
    eng.reset_envs(np.arange(4))
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        target, present = teacher_scores(eng, teacher)
        c = eng.core
        for e in range(4):
            slots = eng.vis[e][present[e]]
            assert (c.s_status[e, slots] != EMPTY).all()
            if teacher == "srtf":
                key = c.s_work[e, slots] - c.s_done[e, slots]
            elif teacher == "las":
                key = c.s_attained[e, slots]
            else:  # Tiresias' queues: attained GPU-seconds below 3250, below 7200, beyond
                key = (c.s_attained[e, slots] >= 3250.0).astype(float) + (c.s_attained[e, slots] >= 7200.0)
            want = sorted(range(len(slots)), key=lambda i: (key[i], c.s_job[e, slots[i]]))
            got = np.argsort(-target[e][present[e]], kind="stable")
            assert list(got) == want
            assert np.all(np.abs(target[e]) <= 0.9) and (target[e][~present[e]] == 0).all()
            checked += len(slots) > 1
        eng.step(rng.uniform(-1, 1, (4, 8)))
        eng.reset_envs(np.flatnonzero(eng.needs_reset))
    assert checked > 20


def test_the_srtf_teacher_needs_known_durations() -> None:
    eng = VectorEngine(1, config(False, "arrival", False, 300.0))
    eng.seed([0])
    eng.reset_envs(np.arange(1))
    with pytest.raises(ValueError, match="known_durations"):
        teacher_scores(eng, "srtf")
    with pytest.raises(ValueError, match="unknown teacher"):
        teacher_scores(eng, "sjf")


def test_the_ranking_loss_is_zero_only_for_the_teacher_order() -> None:
    import torch

    target = torch.tensor([[0.9, 0.0, -0.9, 0.0]])
    present = torch.tensor([[True, True, True, False]])
    good = ranking_loss(torch.tensor([[0.9, 0.0, -0.9, 0.5]]), target, present)
    bad = ranking_loss(torch.tensor([[-0.9, 0.0, 0.9, 0.0]]), target, present)
    assert float(bad) > float(good) + 1.0


@pytest.mark.parametrize("known,teacher,order,every,round_length,baseline", [
    (True, "srtf", "remaining", True, 1800.0, "srtf"),
    (False, "las", "attained", False, 300.0, "las"),
])
def test_a_cloned_agent_decides_and_performs_like_its_teacher(known, teacher, order, every, round_length,
                                                              baseline) -> None:
    cfg = config(known, order, every, round_length)
    model = make_model("ppo", "slot", GpuClusterVecEnv(2, seed=0, config=cfg), cfg, seed=0, n_steps=32,
                       batch_size=64)
    before = demonstrations(cfg, teacher, 800, num_envs=8, seed=99)
    chance = pair_agreement(model.policy, before)
    stats = clone(model, cfg, teacher, steps=4000, iterations=2, num_envs=8, epochs=4, seed=0, log=None)
    # states the cloned agent drives itself, from windows it was not trained on
    held = demonstrations(cfg, teacher, 800, num_envs=8, seed=123, student=model.policy, beta=0.0)
    assert pair_agreement(model.policy, held) >= 0.9 > chance
    assert stats["heldout_agreement"] >= 0.9
    agent = Agent(model, "ppo", "slot", {k: getattr(cfg, k) for k in ENV_KEYS})
    windows = [window(HELD, float(HELD["submit_time"][i]), num_jobs=32) for i in (0, 250)]
    mine = [simulate(w, SPEC, AgentPolicy(agent), known_durations=known, seed=0).metrics["avg_jct"] for w in windows]
    theirs = [simulate(w, SPEC, baselines.get(baseline), known_durations=True, seed=0).metrics["avg_jct"]
              for w in windows]
    assert np.mean(mine) <= 1.05 * np.mean(theirs)
