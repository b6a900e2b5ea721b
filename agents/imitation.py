"""Imitation warm start: behaviour cloning of a heuristic scheduler's order into a priority-mode
policy (:class:`agents.networks.SlotScorePolicy`), before reinforcement learning refines it.

A teacher ranks the visible jobs of every state the way a classic rule does:

- ``"srtf"``: least remaining work first (needs ``known_durations``), as :mod:`baselines.srtf`;
- ``"las"``: least attained GPU-service first, as :mod:`baselines.las`;
- ``"tiresias"``: Tiresias' discretised 2D-LAS, queue by attained GPU-service (limits
  :data:`TIRESIAS_THRESHOLDS`, its defaults), first come first served within a queue (without
  its starvation promotion and consolidation rules), as :mod:`baselines.tiresias`.

Ties keep arrival order. The teacher's target score of a visible job is its rank spread evenly
over ``[-0.9, 0.9]`` (first: 0.9). States come from rollouts of the env (DAgger): the first
round of rollouts is driven by the teacher's scores; every later round by the student's mean
scores with probability ``1 - beta`` per env and step (``beta`` halves every round), labelled by
the teacher, so the student also learns the states its own mistakes lead to. The student's mean
scores are fitted with a squared error to the targets plus a pairwise logistic ranking loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from envs.core import EMPTY
from envs.engine import EnvConfig, VectorEngine

TEACHERS = ("srtf", "las", "tiresias")
#: Tiresias' queue limits on attained GPU-seconds (its default knobs)
TIRESIAS_THRESHOLDS = (3250.0, 7200.0)
#: targets span [-TARGET_SPAN, TARGET_SPAN]: inside tanh's range, so the mean can reach them
TARGET_SPAN = 0.9


@dataclass
class Demonstrations:
    """States with the teacher's targets: ``obs`` ``(N, obs_dim)``, ``target`` ``(N, K)``
    scores, ``present`` ``(N, K)`` which visible slots hold a job."""

    obs: np.ndarray
    target: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    @classmethod
    def concat(cls, parts: list[Demonstrations]) -> Demonstrations:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("obs", "target", "present")))


def teacher_keys(engine: VectorEngine, teacher: str) -> np.ndarray:
    """``(E, K)`` the teacher's sort key of every visible slot (smaller: served first)."""
    c, vis = engine.core, engine.vis
    g = lambda a: np.take_along_axis(a, vis, axis=1)  # noqa: E731
    if teacher == "srtf":
        if not engine.cfg.known_durations:
            raise ValueError("the srtf teacher ranks by remaining work: the env needs known_durations=True")
        return g(c.s_work - c.s_done)
    if teacher == "las":
        return g(c.s_attained)
    if teacher == "tiresias":
        return np.searchsorted(np.asarray(TIRESIAS_THRESHOLDS), g(c.s_attained), side="right").astype(np.float64)
    raise ValueError(f"unknown teacher {teacher!r}; choose from {TEACHERS}")


def teacher_scores(engine: VectorEngine, teacher: str) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's target scores ``(E, K)`` of the visible slots (0 at empty ones) and which
    slots are present: rank by :func:`teacher_keys`, ties by arrival, spread over
    ``[-TARGET_SPAN, TARGET_SPAN]``, first highest."""
    c, vis = engine.core, engine.vis
    present = np.take_along_axis(c.s_status, vis, axis=1) != EMPTY
    key = np.where(present, teacher_keys(engine, teacher), np.inf)
    job = np.where(present, np.take_along_axis(c.s_job, vis, axis=1), np.iinfo(np.int64).max)
    order = np.lexsort((job, key), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(vis.shape[1]), order.shape), axis=1)
    n = present.sum(axis=1, keepdims=True)
    spread = np.where(n > 1, 1.0 - 2.0 * rank / np.maximum(n - 1, 1), 1.0)
    return np.where(present, TARGET_SPAN * spread, 0.0), present


def mean_scores(policy: ActorCriticPolicy, obs: torch.Tensor) -> torch.Tensor:
    """The policy's mean (deterministic) scores for a batch of observations (differentiable)."""
    return policy.get_distribution(obs).distribution.mean


def student_actions(policy: ActorCriticPolicy, obs: np.ndarray) -> np.ndarray:
    """The policy's deterministic scores for ``obs`` (no gradient)."""
    with torch.no_grad():
        return mean_scores(policy, torch.as_tensor(obs, device=policy.device)).cpu().numpy()


def demonstrations(config: EnvConfig, teacher: str, steps: int, *, num_envs: int = 16, seed: int = 0,
                   student: ActorCriticPolicy | None = None, beta: float = 1.0) -> Demonstrations:
    """``steps`` states (rounded up to whole steps of ``num_envs`` envs) from rollouts of the env
    labelled by ``teacher``: each env follows the teacher with probability ``beta`` per step and
    ``student``'s mean scores otherwise (``student`` None: always the teacher)."""
    if config.action_mode != "priority":
        raise ValueError("imitation trains priority-mode scores: the env needs action_mode='priority'")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    rng = np.random.default_rng(seed)
    eng = VectorEngine(num_envs, config)
    eng.seed([int(s) for s in rng.integers(0, 2**31, num_envs)])
    eng.reset_envs(np.arange(num_envs))
    parts = []
    for _ in range(-(-steps // num_envs)):
        obs, _ = eng.observe()
        target, present = teacher_scores(eng, teacher)
        parts.append(Demonstrations(obs, target.astype(np.float32), present))
        actions = target
        if student is not None and beta < 1.0:
            own = rng.random(num_envs) >= beta
            if own.any():
                actions = np.where(own[:, None], student_actions(student, obs), target)
        eng.step(actions)
        eng.reset_envs(np.flatnonzero(eng.needs_reset))
    return Demonstrations.concat(parts)


def ranking_loss(mean: torch.Tensor, target: torch.Tensor, present: torch.Tensor,
                 sharpness: float = 10.0) -> torch.Tensor:
    """Squared error to the targets plus a pairwise logistic loss on every pair of present
    slots the teacher orders (``softplus(-sharpness * (m_i - m_j))`` for i before j)."""
    p = present.float()
    mse = ((mean - target) ** 2 * p).sum() / p.sum().clamp(min=1.0)
    before = (target[:, :, None] > target[:, None, :]) & present[:, :, None] & present[:, None, :]
    diff = mean[:, :, None] - mean[:, None, :]
    pair = torch.nn.functional.softplus(-sharpness * diff)[before]
    return mse + (pair.mean() if pair.numel() else mean.sum() * 0.0)


def pair_agreement(policy: ActorCriticPolicy, data: Demonstrations) -> float:
    """Share of the pairs of present visible jobs that the policy's mean scores order as the
    teacher does (over every state of ``data``)."""
    mean = student_actions(policy, data.obs)
    t, p = data.target, data.present
    before = (t[:, :, None] > t[:, None, :]) & p[:, :, None] & p[:, None, :]
    agree = (mean[:, :, None] > mean[:, None, :]) & before
    return float(agree.sum() / max(before.sum(), 1))


def fit(policy: ActorCriticPolicy, data: Demonstrations, *, epochs: int = 4, batch_size: int = 256,
        learning_rate: float = 1e-3, seed: int = 0) -> float:
    """Fit ``policy``'s mean scores to ``data`` with Adam (its own optimiser is left alone);
    returns the last epoch's mean loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    dev = policy.device
    obs = torch.as_tensor(data.obs, device=dev)
    target = torch.as_tensor(data.target, device=dev)
    present = torch.as_tensor(data.present, device=dev)
    policy.set_training_mode(True)
    last = 0.0
    for _ in range(epochs):
        perm = torch.randperm(len(data), generator=gen).to(dev)
        total, batches = 0.0, 0
        for i in range(0, len(data), batch_size):
            idx = perm[i : i + batch_size]
            loss = ranking_loss(mean_scores(policy, obs[idx]), target[idx], present[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        last = total / max(batches, 1)
    policy.set_training_mode(False)
    return last


def clone(model: BaseAlgorithm | ActorCriticPolicy, config: EnvConfig, teacher: str, *, steps: int = 20_000,
          iterations: int = 3, num_envs: int = 16, epochs: int = 4, batch_size: int = 256,
          learning_rate: float = 1e-3, log_std: float | None = None, seed: int = 0,
          log: Callable[[str], None] | None = print) -> dict[str, float]:
    """Behaviour-clone ``teacher`` into ``model``'s policy (an SB3 model or the policy itself):
    ``iterations`` DAgger rounds of ``steps // iterations`` states each (the first driven by the
    teacher, later ones by a mix with ``beta`` halving), fitting on all states gathered so far.
    ``log_std`` then sets the policy's exploration noise (e.g. lower, so that PPO's sampling
    does not undo the order). Returns the final training loss and pair agreement, and the
    agreement on a fresh set of states driven by the student (``heldout_agreement``)."""
    if teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; choose from {TEACHERS}")
    if steps < 1 or iterations < 1:
        raise ValueError(f"steps and iterations must be >= 1, got {steps} and {iterations}")
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    per_round = max(steps // iterations, num_envs)
    data: Demonstrations | None = None
    loss = float("nan")
    for it in range(iterations):
        beta = 1.0 if it == 0 else 0.5**it
        part = demonstrations(config, teacher, per_round, num_envs=num_envs, seed=seed + it,
                              student=policy if it else None, beta=beta)
        data = part if data is None else Demonstrations.concat([data, part])
        loss = fit(policy, data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed + it)
        if log is not None:
            log(f"imitation {teacher}: round {it + 1}/{iterations}, beta {beta:.2f}, {len(data):,} states, "
                f"loss {loss:.4f}, pair agreement {pair_agreement(policy, data):.3f}")
    assert data is not None
    held = demonstrations(config, teacher, max(per_round // 4, num_envs), num_envs=num_envs, seed=seed + 10_000,
                          student=policy, beta=0.0)
    stats = {"loss": loss, "agreement": pair_agreement(policy, data), "heldout_agreement": pair_agreement(policy, held)}
    if log is not None:
        log(f"imitation {teacher}: pair agreement on {len(held):,} states the student drove: "
            f"{stats['heldout_agreement']:.3f}")
    if log_std is not None:
        with torch.no_grad():
            policy.log_std.fill_(float(log_std))
    return stats
