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
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.device import resolve_device
from agents.networks import SlotExtractor, SlotPolicy, SlotScorePolicy
from agents.pretrained import pretrained_names, resolve_agent, training_record
from agents.threads import ensure_torch_threads, set_torch_threads
from envs.core import EMPTY, RUNNING
from envs.engine import SLOT_FEATURES, EnvConfig, VectorEngine, observation_size
from envs.observation import allocate_size
from envs.policy import Allocation, ClusterView, Policy, Priority

ALGOS = {"maskable_ppo": MaskablePPO, "ppo": PPO}
#: env options an agent's observations and actions depend on (saved with the agent)
ENV_KEYS = ("max_slots", "known_durations", "action_mode", "preemption", "round_length", "restart_overhead",
            "reward", "reward_scale", "visible_order", "serve_hidden", "preempt_every_event")

__all__ = ["ALGOS", "Agent", "AgentPolicy", "SlotExtractor", "SlotPolicy", "SlotScorePolicy",
           "ensure_torch_threads", "load_agent", "make_model", "policy_kwargs_for", "pretrained_names",
           "resolve_agent", "resolve_device", "save_agent", "set_torch_threads", "training_record"]


def policy_kwargs_for(env_config: EnvConfig, hidden: int = 64) -> dict:
    """``policy_kwargs`` for :class:`SlotPolicy` on an env with this configuration."""
    return {"slots": int(env_config.max_slots), "slot_features": len(SLOT_FEATURES), "hidden": hidden}


def make_model(algo: str, policy: str, venv, env_config: EnvConfig, *, seed: int = 0, hidden: int = 64,
               policy_extra: dict | None = None, device: str = "cpu", **hyperparameters) -> BaseAlgorithm:
    """A fresh SB3 model: ``algo`` in :data:`ALGOS`, ``policy`` ``"slot"`` (:class:`SlotPolicy` with
    ``maskable_ppo`` in pick mode, :class:`SlotScorePolicy` with ``ppo`` in priority mode) or
    ``"mlp"`` (SB3's ``MlpPolicy``, the reference agent), its network on ``device``
    (:func:`agents.device.resolve_device`). Sets torch's threads for small networks
    (:mod:`agents.threads`)."""
    ensure_torch_threads()
    device = resolve_device(device, log=None)
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {sorted(ALGOS)}")
    if policy == "slot":
        kwargs = {**policy_kwargs_for(env_config, hidden), **(policy_extra or {})}
        if env_config.action_mode == "priority":
            if algo != "ppo":
                raise ValueError("priority mode has continuous scores and no masks: use algo='ppo'")
            return PPO(SlotScorePolicy, venv, seed=seed, device=device, policy_kwargs=kwargs, **hyperparameters)
        if algo != "maskable_ppo":
            raise ValueError("the slot policy in pick mode needs action masks: use algo='maskable_ppo'")
        return MaskablePPO(SlotPolicy, venv, seed=seed, device=device, policy_kwargs=kwargs, **hyperparameters)
    if policy == "mlp":
        return ALGOS[algo]("MlpPolicy", venv, seed=seed, device=device,
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
        return EnvConfig.from_options(**{**self.env, **overrides})


def save_agent(model: BaseAlgorithm, path: str | Path, *, algo: str, policy: str, env_config: EnvConfig) -> Path:
    """Write ``model.zip`` and ``agent.json`` into the folder ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / "model.zip")
    meta = {"algo": algo, "policy": policy, "env": {k: getattr(env_config, k) for k in ENV_KEYS}}
    (path / "agent.json").write_text(json.dumps(meta, indent=2))
    return path


def load_agent(path: str | Path, device: str = "cpu") -> Agent:
    """Load an agent folder written by :func:`save_agent`, or a shipped agent by name
    (:func:`agents.pretrained.pretrained_names`, e.g. ``"philly-clairvoyant"``); a clear error
    if it is neither. Its network goes on ``device`` whatever device it was trained on. Sets
    torch's threads for small networks (:mod:`agents.threads`)."""
    ensure_torch_threads()
    path = resolve_agent(path)  # a folder, or a shipped agent by name (else a clear error)
    meta_file = path / "agent.json"
    if not meta_file.is_file() or not (path / "model.zip").is_file():
        raise FileNotFoundError(f"{path}: not an agent folder (expected agent.json and model.zip)")
    meta = json.loads(meta_file.read_text())
    if meta.get("algo") not in ALGOS:
        raise ValueError(f"{meta_file}: unknown algorithm {meta.get('algo')!r}")
    model = ALGOS[meta["algo"]].load(path / "model.zip", device=resolve_device(device, log=None))
    return Agent(model, meta["algo"], meta["policy"], meta["env"])


class AgentPolicy(Policy):
    """Runs a trained agent as a scheduler (in :func:`envs.simulate` or any driver of a
    :class:`~envs.policy.Policy`), seeing exactly the observations the env shows, and returns
    its choice as a :class:`~envs.policy.Priority`.

    ``priority`` mode: the agent's scores at the visible slots, ranked as the env ranks them
    (:meth:`envs.engine.VectorEngine.priority`: clipped to [-1, 1], running jobs that are not
    visible keep their GPUs, preempting at round boundaries when the agent was trained with
    preemption; the replay then uses the agent's round length). Where every score was invalid
    on an idle cluster, waiting jobs are served oldest first, as the env does.

    ``pick`` mode: the agent picks jobs one at a time (observing after each pick, as in the
    env) until it chooses to advance or nothing more can start. The picks are tried on a private
    copy of the state (:meth:`~envs.policy.ClusterView.what_if`) and returned as a ``Priority``
    that serves the picked jobs in pick order (each on the fastest GPU type with room, as a pick
    starts it); an env left idle with nothing left to happen serves its waiting jobs oldest first
    instead of deadlocking. Agents trained with pick mode's re-pick phase (preemption) are not
    supported here.

    ``allocate`` mode: the agent's allocate action is carried out on a private copy of the state
    exactly as the env carries it out (:meth:`envs.engine.VectorEngine.allocate`, its fallbacks
    included), and the resulting GPU count, type and batch choice of every job are returned as an
    :class:`~envs.policy.Allocation` (the replay then uses the agent's round length, with
    reallocation at its round boundaries when it was trained with preemption).
    """

    def __init__(self, agent: Agent | str | Path, *, deterministic: bool = True, device: str = "cpu") -> None:
        ensure_torch_threads()
        self.agent = agent if isinstance(agent, Agent) else load_agent(agent, device=device)
        self.name = f"agent:{Path(agent).name}" if not isinstance(agent, Agent) else "agent"
        self.deterministic = deterministic
        env = self.agent.env
        self.needs_durations = bool(env.get("known_durations", False))
        if env.get("preemption") and env.get("action_mode", "pick") == "pick":
            raise ValueError("agents trained with pick mode's re-pick phase cannot run in a replay")
        self.round_length = env.get("round_length") if env.get("preemption") else None
        self.config: EnvConfig | None = None
        self._last_clock: np.ndarray | None = None

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        self.config = self.agent.env_config(cluster=view.cluster)
        want = self.agent.model.observation_space.shape
        have = observation_size(int(self.config.max_slots), len(view.gpu_types))
        if self.config.action_mode == "allocate":
            have += allocate_size(int(self.config.max_slots), len(view.gpu_types))
        if want != (have,):
            raise ValueError(
                f"agent expects observations of shape {want}, this cluster gives ({have},): "
                f"it was trained on a cluster with another number of GPU types or another K")
        self._last_clock = np.array(view.clock)

    def prepare(self, view: ClusterView) -> None:
        if self.config is None or self._last_clock is None or len(self._last_clock) != view.num_envs:
            self.reset(view)

    def _predict(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if isinstance(self.agent.model, MaskablePPO):
            action, _ = self.agent.model.predict(obs, action_masks=mask, deterministic=self.deterministic)
        else:
            # the body of SB3's predict (obs as a batch of vectors, a Box action space), less its
            # set_training_mode on every call, which walks every module of the network
            policy = self.agent.model.policy
            if policy.training:
                policy.set_training_mode(False)
            with torch.no_grad():
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=policy.device)
                action = policy._predict(obs_t, deterministic=self.deterministic).cpu().numpy()  # noqa: SLF001
            space = policy.action_space
            action = action.reshape((-1, *space.shape))
            if isinstance(space, spaces.Box):
                action = policy.unscale_action(action) if policy.squash_output else np.clip(action, space.low, space.high)
        return np.asarray(action)

    def _scratch(self, view: ClusterView) -> VectorEngine:
        """An engine on a private copy of the state, showing what the env would show now."""
        eng = VectorEngine(config=self.config, core=view.what_if())
        clock = np.array(view.clock)
        eng.last_dt = clock - self._last_clock
        eng.at_round = np.array(view.at_round_boundary, dtype=bool)
        self._last_clock = clock
        eng.refresh()
        return eng

    def decide(self, view: ClusterView) -> Priority | Allocation | None:
        self.prepare(view)
        eng = self._scratch(view)
        E, S = view.num_envs, view.job.shape[1]
        everywhere = np.ones(E, dtype=bool)
        waiting = view.waiting
        if eng.cfg.action_mode == "allocate":
            obs, mask = eng.observe()
            eng.allocate(self._predict(obs, mask), everywhere)  # tried on the private copy
            c = eng.core
            # an idle cluster the agent keeps idle: with rounds nothing would ever end the replay (the
            # env truncates such an episode at max_steps); serve its jobs oldest first instead
            idle = waiting.any(axis=1) & ~view.running.any(axis=1) & ~(c.s_status[:, :S] == RUNNING).any(axis=1)
            if idle.any():
                eng.serve_oldest(idle)
            return Allocation(c.s_n[:, :S].copy(), c.s_t[:, :S].copy(), adaptive=c.s_adapt[:, :S].copy())
        if eng.cfg.action_mode == "priority":
            obs, _ = eng.observe()
            actions = self._predict(obs, eng.mask)
            p = eng.priority(actions, everywhere)
            scores, preempt = p.scores[:, :S], np.asarray(p.preempt, dtype=bool)
            # the env's fallback can only trigger where nothing keeps running through the serving
            maybe = waiting.any(axis=1) & (preempt | ~view.running.any(axis=1))
            if maybe.any():
                stuck = eng.serve_scores(actions, everywhere)  # tried on the private copy
                # nothing runs in a stuck env: serve its jobs oldest first instead
                active = view.status != EMPTY
                scores = np.where(stuck[:, None], np.where(active, -view.job.astype(np.float64), -np.inf), scores)
            return Priority(scores, preempt=preempt)
        picked = np.full((E, eng.core.S), -np.inf)
        for r in range(eng.core.S + 1):
            obs, mask = eng.observe()
            a = self._predict(obs, mask).reshape(E).astype(np.int64)
            ok = (a < eng.K) & mask[np.arange(E), np.clip(a, 0, eng.K)]
            if not ok.any():
                break
            e = np.flatnonzero(ok)
            picked[e, eng.visible[e, a[e]]] = float(eng.core.S + 1 - r)
            eng.pick(e, a[e])
        scores = picked[:, :S]
        idle = ~np.isfinite(eng.core.next_event())  # never leave an idle cluster deadlocked
        oldest_first = np.where(waiting, -view.job.astype(np.float64), -np.inf)
        scores = np.where(idle[:, None] & (scores == -np.inf), oldest_first, scores)
        if not (scores > -np.inf).any():
            return None
        return Priority(scores)
