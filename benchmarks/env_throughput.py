"""Env-steps per second of the native vector env vs Gymnasium's SyncVectorEnv over single envs.

Realistic config: 64 GPUs (8 x 8), K = 32 visible slots, pick mode, random legal actions.

    python benchmarks/env_throughput.py [--sizes 1 16 256 1024] [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs  # noqa: F401  (registers GpuCluster-v0)

CONFIG = dict(cluster="small", max_slots=32, num_jobs=64)


def random_legal(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random allowed action per row of ``masks`` (vectorised)."""
    noise = rng.random(masks.shape) * masks
    return noise.argmax(axis=1)


def run(env, steps: int, rng: np.random.Generator) -> float:
    _, info = env.reset(seed=0)
    masks = info["action_mask"]
    for _ in range(5):  # warm-up
        *_, info = env.step(random_legal(masks, rng))
        masks = info["action_mask"]
    start = time.perf_counter()
    for _ in range(steps):
        _obs, _r, _te, _tr, info = env.step(random_legal(masks, rng))
        masks = info["action_mask"]
    return steps * env.num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256, 1024])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sync-steps", type=int, default=20, help="steps for SyncVectorEnv (slow)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'N':>6} {'native steps/s':>16} {'sync steps/s':>14} {'ratio':>7}")
    for n in args.sizes:
        native = gym.make_vec("GpuCluster-v0", num_envs=n, **CONFIG)
        sync = SyncVectorEnv([lambda: gym.make("GpuCluster-v0", **CONFIG) for _ in range(n)],
                             autoreset_mode=AutoresetMode.SAME_STEP)
        # SyncVectorEnv stacks infos; its action_mask entry is (n, K + 1) like the native one
        fast = run(native, args.steps, rng)
        slow = run(sync, max(2, args.sync_steps if n >= 256 else args.steps // 4), rng)
        print(f"{n:>6} {fast:>16,.0f} {slow:>14,.0f} {fast / slow:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
