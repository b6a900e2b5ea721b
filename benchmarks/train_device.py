"""Training steps/s of a default-size and a large slot network, on each device given.

The simulator runs on the CPU either way; only the network moves. ``default``: the shipped
network (K = 32 visible slots, hidden 64) on the ``small`` cluster; ``large``: the same slot
network seeing 500 slots with hidden 256 (500-job windows on ``small``).

    python benchmarks/train_device.py [--devices cpu cuda] [--steps 4096]
"""

from __future__ import annotations

import argparse
import time

from agents import make_model, resolve_device
from envs import EnvConfig
from envs.sb3 import GpuClusterVecEnv

SIZES = {
    "default": (EnvConfig(cluster="small", num_jobs=64, max_slots=32), 64),
    "large": (EnvConfig(cluster="small", num_jobs=500, max_slots=500), 256),
}


def steps_per_second(size: str, device: str, steps: int, num_envs: int = 8, n_steps: int = 256) -> float:
    cfg, hidden = SIZES[size]
    venv = GpuClusterVecEnv(num_envs, seed=0, config=cfg)
    model = make_model("maskable_ppo", "slot", venv, cfg, hidden=hidden, n_steps=n_steps, batch_size=256,
                       n_epochs=4, device=device)
    model.learn(num_envs * n_steps)  # warm-up: one rollout and update
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["cpu"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=4096)
    args = parser.parse_args()
    print(f"{'network':>8} {'device':>8} {'steps/s':>10}")
    for size in args.sizes:
        for device in args.devices:
            resolve_device(device)
            print(f"{size:>8} {device:>8} {steps_per_second(size, device, args.steps):>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
