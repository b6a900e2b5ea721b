"""Time the optimisation-based schedulers on a Pollux workload (160 goodput jobs, 8 hours).

For each policy: wall time of the whole replay, jobs/s, events, avg JCT (s) and its ratio to
the published figure where there is one (Pollux artifact README, workload 6: Pollux 2,446 s,
Tiresias 3,470 s, Optimus+Oracle 5,302 s), with the artifact's settings (30 s restart delay,
60 s intervals for Optimus and Tiresias' decisions, two Tiresias queues split at 16 GPU-hours).
Published simulators run these policies at under 0.1 jobs/s (Pollux) and 0.3 jobs/s (Sia).

    python benchmarks/pollux_workload.py [--workload 6] [--cluster pollux|sia-mix]
                                         [--policies pollux sia gavel ...]

``sia-mix`` is the 64-GPU heterogeneous cluster of the ``sia`` leaderboard suite (6 x 4 T4,
3 x 8 K80, 2 x 8 V100), with Sia's restart delay per application.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import baselines
import envs
from envs.goodput import SIA_RESTART
from traces import clusters, pollux
from traces.paths import shared_file

PUBLISHED = {"pollux": 2446.0, "tiresias": 3470.0, "optimus": 5302.0}
KNOBS = {"tiresias": {"thresholds": [57600.0], "round_length": 60.0, "preempt": "round"},
         "optimus": {"interval": 60.0}}
DEFAULT = ["pollux", "sia", "gavel", "gavel_agnostic", "lyra", "heet", "optimus", "tiresias", "fifo"]


def sia_mix() -> clusters.ClusterSpec:
    """Sia's 64-GPU three-type shape with the types the speed table knows."""
    return clusters.from_counts("sia-mix", [("t4", 6, 4, 32, 256), ("k80", 3, 8, 64, 512), ("v100", 2, 8, 64, 512)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=int, default=6)
    parser.add_argument("--cluster", choices=("pollux", "sia-mix"), default="pollux")
    parser.add_argument("--policies", nargs="+", default=DEFAULT)
    args = parser.parse_args()
    path = shared_file("reference", "pollux", "workloads", f"workload-{args.workload}.csv")
    trace = pollux.load_workload(path)
    spec = clusters.pollux() if args.cluster == "pollux" else sia_mix()
    restart = SIA_RESTART if args.cluster == "sia-mix" else None
    print(f"workload-{args.workload}: {len(trace)} jobs on {spec.name} ({spec.num_gpus} GPUs)")
    print(f"{'policy':<15}{'wall_s':>8}{'jobs/s':>8}{'events':>8}{'avg_jct_s':>11}{'vs_pub':>8}")
    for name in args.policies:
        policy = baselines.get(name, **KNOBS.get(name, {}))
        start = time.perf_counter()
        res = envs.simulate(trace, spec, policy, restart=restart)
        wall = time.perf_counter() - start
        jct = res.metrics["avg_jct"]
        pub = PUBLISHED.get(name) if args.cluster == "pollux" and args.workload == 6 else None
        vs = f"{jct / pub:.3f}" if pub else "-"
        print(f"{name:<15}{wall:>8.1f}{len(trace) / wall:>8.1f}{res.events:>8d}{jct:>11.0f}{vs:>8}", flush=True)


if __name__ == "__main__":
    main()
