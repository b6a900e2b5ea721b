"""Learned schedulers: policy networks, save/load, and the adapter that runs an agent anywhere a
baseline runs (``envs.simulate``, the leaderboard).

An agent on disk is a folder holding ``model.zip`` (stable-baselines3) and ``agent.json`` (the
algorithm, the policy network, and the env options the observation depends on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.networks import SlotExtractor, SlotPolicy, SlotScorePolicy
from envs.engine import SLOT_FEATURES, EnvConfig, VectorEngine
from envs.policy import ClusterView, Policy

ALGOS = {"maskable_ppo": MaskablePPO, "ppo": PPO}
#: env options an agent's observations and actions depend on (saved with the agent)
ENV_KEYS = ("max_slots", "known_durations", "action_mode", "preemption", "round_length", "restart_overhead",
            "reward", "reward_scale")

__all__ = ["ALGOS", "Agent", "AgentPolicy", "SlotExtractor", "SlotPolicy", "SlotScorePolicy", "load_agent", "make_model",
           "policy_kwargs_for", "save_agent"]


def policy_kwargs_for(env_config: EnvConfig, hidden: int = 64) -> dict:
    """``policy_kwargs`` for :class:`SlotPolicy` on an env with this configuration."""
    return {"slots": int(env_config.max_slots), "slot_features": len(SLOT_FEATURES), "hidden": hidden}


def make_model(algo: str, policy: str, venv, env_config: EnvConfig, *, seed: int = 0, hidden: int = 64,
               policy_extra: dict | None = None, **hyperparameters) -> BaseAlgorithm:
    """A fresh SB3 model: ``algo`` in :data:`ALGOS`, ``policy`` ``"slot"`` (:class:`SlotPolicy` with
    ``maskable_ppo`` in pick mode, :class:`SlotScorePolicy` with ``ppo`` in priority mode) or
    ``"mlp"`` (SB3's ``MlpPolicy``, the reference agent)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {sorted(ALGOS)}")
    if policy == "slot":
        kwargs = {**policy_kwargs_for(env_config, hidden), **(policy_extra or {})}
        if env_config.action_mode == "priority":
            if algo != "ppo":
                raise ValueError("priority mode has continuous scores and no masks: use algo='ppo'")
            return PPO(SlotScorePolicy, venv, seed=seed, device="cpu", policy_kwargs=kwargs, **hyperparameters)
        if algo != "maskable_ppo":
            raise ValueError("the slot policy in pick mode needs action masks: use algo='maskable_ppo'")
        return MaskablePPO(SlotPolicy, venv, seed=seed, device="cpu", policy_kwargs=kwargs, **hyperparameters)
    if policy == "mlp":
        return ALGOS[algo]("MlpPolicy", venv, seed=seed, device="cpu",
                           policy_kwargs={"net_arch": [hidden, hidden], **(policy_extra or {})}, **hyperparameters)
    raise ValueError(f"unknown policy {policy!r}; choose 'slot' or 'mlp'")


@dataclass
class Agent:
    """A trained model with what it needs to be run again."""

    model: BaseAlgorithm
    algo: str
    policy: str
    env: dict

    def env_config(self, **overrides) -> EnvConfig:
        return EnvConfig(**{**self.env, **overrides})


def save_agent(model: BaseAlgorithm, path: str | Path, *, algo: str, policy: str, env_config: EnvConfig) -> Path:
    """Write ``model.zip`` and ``agent.json`` into the folder ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / "model.zip")
    meta = {"algo": algo, "policy": policy, "env": {k: getattr(env_config, k) for k in ENV_KEYS}}
    (path / "agent.json").write_text(json.dumps(meta, indent=2))
    return path


def load_agent(path: str | Path) -> Agent:
    """Load an agent folder written by :func:`save_agent` (clear error if it is not one)."""
    path = Path(path)
    meta_file = path / "agent.json"
    if not meta_file.is_file() or not (path / "model.zip").is_file():
        raise FileNotFoundError(f"{path}: not an agent folder (expected agent.json and model.zip)")
    meta = json.loads(meta_file.read_text())
    if meta.get("algo") not in ALGOS:
        raise ValueError(f"{meta_file}: unknown algorithm {meta.get('algo')!r}")
    model = ALGOS[meta["algo"]].load(path / "model.zip", device="cpu")
    return Agent(model, meta["algo"], meta["policy"], meta["env"])


class AgentPolicy(Policy):
    """Runs a trained agent as a scheduler on the core API (in :func:`envs.simulate` or any loop
    over a :class:`~envs.core.ClusterCore`), seeing exactly the observations the env shows.

    In ``pick`` mode the agent picks jobs one at a time at each event (each pick starts the job,
    as in the env) until it chooses to advance or nothing more can start; agents trained with
    pick mode's re-pick phase (preemption) are not supported here. In ``priority`` mode its
    scores at the visible slots are served exactly as the env serves them, preempting at round
    boundaries when the agent was trained with preemption (the replay then uses the agent's
    round length).
    """

    def __init__(self, agent: Agent | str | Path, *, deterministic: bool = True) -> None:
        self.agent = agent if isinstance(agent, Agent) else load_agent(agent)
        self.name = f"agent:{Path(agent).name}" if not isinstance(agent, Agent) else "agent"
        self.deterministic = deterministic
        env = self.agent.env
        self.needs_durations = bool(env.get("known_durations", False))
        if env.get("preemption") and env.get("action_mode", "pick") == "pick":
            raise ValueError("agents trained with pick mode's re-pick phase cannot run in a replay")
        self.round_length = env.get("round_length") if env.get("preemption") else None
        self.engine: VectorEngine | None = None

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        core = view._core
        self.engine = VectorEngine(config=self.agent.env_config(cluster=core.cluster), core=core)
        want = self.agent.model.observation_space.shape
        if want != (self.engine.obs_dim,):
            raise ValueError(
                f"agent expects observations of shape {want}, this cluster gives ({self.engine.obs_dim},): "
                f"it was trained on a cluster with another number of GPU types or another K")
        self._last_clock = core.clock.copy()

    def _predict(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if isinstance(self.agent.model, MaskablePPO):
            action, _ = self.agent.model.predict(obs, action_masks=mask, deterministic=self.deterministic)
        else:
            action, _ = self.agent.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(action)

    def decide(self, view: ClusterView):
        eng = self.engine
        core = view._core
        eng.last_dt = core.clock - self._last_clock
        eng.at_round = view.at_round_boundary.copy()
        self._last_clock = core.clock.copy()
        eng.refresh()
        K = eng.K
        if eng.cfg.action_mode == "priority":
            obs, _ = eng.observe()
            eng.serve_scores(self._predict(obs, eng.mask), np.ones(core.E, dtype=bool))
            return None
        for _ in range(core.S + 1):
            obs, mask = eng.observe()
            a = self._predict(obs, mask).reshape(core.E).astype(np.int64)
            ok = (a < K) & mask[np.arange(core.E), np.clip(a, 0, K)]
            if not ok.any():
                break
            eng.pick(np.flatnonzero(ok), a[ok])
        if not np.isfinite(core.next_event()).all():  # never leave an idle cluster deadlocked
            idle = ~np.isfinite(core.next_event())
            core.serve(np.where(core.s_status == 1, -core.s_job.astype(float), -np.inf), envs=idle)
        return None
