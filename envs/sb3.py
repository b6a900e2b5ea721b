"""A stable-baselines3 ``VecEnv`` over the native vectorised core.

Same-step autoreset as SB3 expects: when an episode ends, the returned observation is the
first of the next episode and ``infos[i]["terminal_observation"]`` holds the last one;
``infos[i]["TimeLimit.truncated"]`` marks truncation; ``infos[i]["episode"]`` carries
``r`` (return), ``l`` (length) and ``t`` like SB3's ``Monitor``, and
``infos[i]["episode_metrics"]`` the scheduling metrics. ``action_masks()`` serves sb3-contrib's
``MaskablePPO``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from envs.engine import EnvConfig, VectorEngine
from envs.gpu_cluster import _spaces


class GpuClusterVecEnv(VecEnv):
    """``num_envs`` GpuCluster environments for stable-baselines3 (options as ``GpuClusterEnv``)."""

    def __init__(self, num_envs: int = 1, seed: int | None = None, config: EnvConfig | None = None,
                 **options: Any) -> None:
        if config is not None and options:
            raise TypeError("give either config or keyword options, not both")
        self.engine = VectorEngine(num_envs, config or EnvConfig.from_options(**options))
        obs_space, act_space = _spaces(self.engine)
        self.render_mode = None
        super().__init__(num_envs, obs_space, act_space)
        self._seed = seed
        self._actions: np.ndarray | None = None
        self._mask = np.ones((num_envs, self.engine.mask_size), dtype=bool)
        self._t0 = time.time()

    def reset(self) -> np.ndarray:
        eng = self.engine
        seeds = [self._seeds[i] if i < len(self._seeds) else None for i in range(self.num_envs)]
        if self._seed is not None:
            seeds = [self._seed + i if s is None else s for i, s in enumerate(seeds)]
        eng.seed(seeds)
        self._seed = None
        self._reset_seeds()
        eng.reset_envs(np.arange(self.num_envs))
        obs, self._mask = eng.observe()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        eng = self.engine
        reward, term, trunc, _invalid, _live = eng.step(self._actions)
        done = term | trunc
        obs, mask = eng.observe()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            idx = np.flatnonzero(done)
            for i, episode in zip(idx, eng.episode_metrics_many(idx), strict=True):
                infos[i] = {
                    "terminal_observation": obs[i].copy(),
                    "TimeLimit.truncated": bool(trunc[i] and not term[i]),
                    "episode": {"r": float(eng.ep_return[i]), "l": int(eng.steps[i]),
                                "t": round(time.time() - self._t0, 6)},
                    "episode_metrics": episode,
                }
            eng.reset_envs(idx)
            obs, mask = eng.observe()
        self._mask = mask
        return obs, reward.astype(np.float32), done, infos

    def action_masks(self) -> np.ndarray:
        """``(num_envs, mask_size)`` allowed actions now (``K + 1`` picks, or allocate mode's
        concatenated per-dimension masks)."""
        return self._mask.copy()

    def close(self) -> None:
        pass

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    # -- the VecEnv plumbing for attributes and methods (one shared engine, not sub-envs) --
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices: VecEnvIndices = None, **kwargs) -> list[Any]:
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._get_indices(indices)]
        return [getattr(self, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def _get_indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)
