"""PPO from RLlib (new API stack) on GpuCluster-v0 in pick mode, with action masking, stepping
the env's native vector env.

    python examples/rllib_gpu_cluster.py --env-runners 2 --envs-per-runner 16 --iterations 5

RLlib's env runners step one vector env each (``gym_env_vectorize_mode="vector_entry_point"``,
``num_envs_per_env_runner`` envs): :class:`MaskedVectorEnv`, which runs the engine of
:class:`envs.gpu_cluster.GpuClusterVectorEnv` (every env of a runner advanced by one set of NumPy
operations) and adapts it to what RLlib expects:

- observations are ``Dict(observations=..., action_mask=...)``, the form read by RLlib's
  action-masking RLModule (``ActionMaskingTorchRLModule``, shipped in ``ray.rllib.examples``),
  which sets the logits of forbidden actions to the lowest float;
- episodes reset on the step after they end (``autoreset_mode = NEXT_STEP``, what RLlib's
  env runner assumes), not within the same step as ``GpuClusterVectorEnv`` does: the step that
  ends an episode returns its last observation, and the next step starts the new episode,
  ignoring that env's action.

Each finished episode's metrics (``avg_jct``, ``utilization``...) are logged by the env runners
(``env_runners/episode_avg_jct``). Prints env steps per second of training (sampling and
learning, the first iteration excluded as warm-up).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.gpu_cluster import GpuClusterVectorEnv

#: the name the env is registered under with Ray Tune's registry (what RLlib looks up)
ENV_NAME = "GpuClusterMasked-v0"
#: the env options of the example (any of GpuCluster-v0's; the action mode is always pick)
ENV_OPTIONS: dict[str, Any] = {"cluster": "tiny", "num_jobs": 64, "max_slots": 16, "known_durations": True}
#: episode metrics logged per finished episode
LOGGED = ("avg_jct", "utilization", "invalid_actions")


class MaskedVectorEnv(VectorEnv):
    """``num_envs`` GpuCluster envs (pick mode) with the action mask in a Dict observation and
    next-step autoreset, on the engine of :class:`GpuClusterVectorEnv`."""

    metadata: ClassVar[dict] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, **options: Any) -> None:
        if options.get("action_mode", "pick") != "pick":
            raise ValueError(f"action masking needs action_mode='pick', got {options['action_mode']!r}")
        self.inner = GpuClusterVectorEnv(num_envs, **{**options, "action_mode": "pick"})
        self.num_envs = self.inner.num_envs
        n = int(self.inner.single_action_space.n)
        self.single_observation_space = gym.spaces.Dict({
            "observations": self.inner.single_observation_space,
            "action_mask": gym.spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32),
        })
        self.single_action_space = self.inner.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._ended = np.zeros(self.num_envs, dtype=bool)  # episodes that end: reset on the next step

    @staticmethod
    def _obs(obs: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {"observations": obs, "action_mask": mask.astype(np.float32)}

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        obs, infos = self.inner.reset(seed=seed, options=options)
        self._ended[:] = False
        return self._obs(obs, infos["action_mask"]), {}

    def step(self, actions):
        eng = self.inner.engine
        ended = self._ended
        # an env whose episode ended last step is reset now and its action ignored: the engine
        # does not step a finished (terminated) env; a truncated one is stepped once more with
        # "advance", which is discarded with the rest of its old episode
        actions = np.where(ended, eng.K, np.asarray(actions).reshape(self.num_envs))
        reward, terminated, truncated, _, _ = eng.step(actions)
        reward[ended], terminated[ended], truncated[ended] = 0.0, False, False
        eng.reset_envs(np.flatnonzero(ended))
        obs, mask = eng.observe()
        done = terminated | truncated
        infos: dict[str, Any] = {}
        if done.any():
            metrics = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(done):
                metrics[i] = eng.episode_metrics(int(i))
            infos = {"episode_metrics": metrics, "_episode_metrics": done.copy()}
        self._ended = done
        return self._obs(obs, mask), reward.astype(np.float32), terminated, truncated, infos


def make_env(config: dict) -> MaskedVectorEnv:
    """RLlib's env creator: ``config`` is the env config plus ``num_envs`` (vector entry point)."""
    options = {k: v for k, v in dict(config).items() if k != "num_envs"}
    return MaskedVectorEnv(int(config.get("num_envs", 1)), **options)


def log_episode_metrics(*, episode, metrics_logger, **_: Any) -> None:
    """Log the finished episode's scheduling metrics (``env_runners/episode_<name>``)."""
    info = episode.get_infos(-1)
    m = info.get("episode_metrics") if isinstance(info, dict) else None
    if m:
        for name in LOGGED:
            if name in m:
                metrics_logger.log_value(f"episode_{name}", float(m[name]), reduce="mean")


def build_config(env_runners: int = 1, envs_per_runner: int = 16, rollout: int = 64, minibatch: int = 256,
                 epochs: int = 4, hidden: int = 64, seed: int = 0, env_options: dict | None = None):
    """The PPOConfig of the example: new API stack, masked RLModule, native vector envs."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_env)
    batch = max(1, env_runners) * envs_per_runner * rollout
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config={**ENV_OPTIONS, **(env_options or {})})
        .env_runners(num_env_runners=env_runners, num_envs_per_env_runner=envs_per_runner,
                     gym_env_vectorize_mode="vector_entry_point", rollout_fragment_length=rollout,
                     num_cpus_per_env_runner=1)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=batch, minibatch_size=min(minibatch, batch), num_epochs=epochs,
                  lr=3e-4, gamma=0.99, lambda_=0.95, entropy_coeff=0.01)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ActionMaskingTorchRLModule,
                                               model_config={"fcnet_hiddens": [hidden, hidden]}))
        .callbacks(on_episode_end=log_episode_metrics)
        .debugging(seed=seed)
    )


def train(iterations: int, **config: Any) -> dict[str, Any]:
    """Build the algorithm and train ``iterations`` iterations. Returns the env steps sampled,
    steps/s (per second of ``train()``, after the first iteration), the episodes finished, the
    episode metrics of the last iteration in which episodes ended (``episodes``: RLlib reports
    them per iteration) and the last result."""
    algo = build_config(**config).build_algo()
    try:
        steps, times, result, episodes, finished = [], [], {}, {}, 0
        for _ in range(iterations):
            start = time.perf_counter()
            result = algo.train()
            times.append(time.perf_counter() - start)
            runners = result["env_runners"]
            steps.append(int(runners["num_env_steps_sampled"]))
            if runners.get("num_episodes", 0) > 0:
                finished += int(runners["num_episodes"])
                episodes = {k: runners[k] for k in ("episode_return_mean", "episode_len_mean",
                                                    *(f"episode_{m}" for m in LOGGED)) if k in runners}
        timed = slice(1, None) if iterations > 1 else slice(None)
        rate = sum(steps[timed]) / sum(times[timed])
        return {"steps": sum(steps), "steps_per_s": rate, "episodes_finished": finished, "episodes": episodes,
                "result": result}
    finally:
        algo.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env-runners", type=int, default=1, help="remote env runners (0: sample in the driver)")
    ap.add_argument("--envs-per-runner", type=int, default=16, help="envs of each runner's vector env")
    ap.add_argument("--rollout", type=int, default=64, help="steps per env per runner per iteration")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--address", help="Ray cluster to join (default: a local instance)")
    args = ap.parse_args(argv)
    import ray

    if args.address is None:
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    try:
        out = train(args.iterations, env_runners=args.env_runners, envs_per_runner=args.envs_per_runner,
                    rollout=args.rollout, seed=args.seed)
    finally:
        ray.shutdown()
    ep = out["episodes"]
    print(f"{args.env_runners} env runner(s) x {args.envs_per_runner} envs: {out['steps']:,} env steps in "
          f"{args.iterations} iterations, {out['steps_per_s']:,.0f} env steps/s (after the first iteration); "
          f"{out['episodes_finished']} episodes finished; the last ones: return "
          f"{ep.get('episode_return_mean', float('nan')):.2f}, avg JCT {ep.get('episode_avg_jct', float('nan')):,.0f} s, "
          f"forbidden actions {ep.get('episode_invalid_actions', float('nan')):g}")


if __name__ == "__main__":
    main()
