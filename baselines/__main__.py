"""Replay a trace under a scheduler and print its metrics.

    python -m baselines                                    # synthetic default, FIFO, 64 GPUs
    python -m baselines --policy tiresias --load 1.2 --num-jobs 5000
    python -m baselines --trace ../shared/traces/philly/pollux_philly.csv.gz --cluster philly
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import baselines
from envs.config import SimConfig
from envs.simulate import simulate
from traces import clusters, load_trace, synthetic, window


@dataclass
class ReplayArgs:
    trace: str | None = None
    """trace file (any format ``traces.load_trace`` reads); default: the synthetic generator"""
    cluster: str = "small"
    """cluster preset (``traces.clusters.PRESETS``)"""
    policy: str = "fifo"
    """scheduler name (``baselines.names()``)"""
    num_jobs: int = 2000
    """jobs to replay (a window from the start of the trace; 0 = the whole trace)"""
    load: float | None = 0.9
    """target offered load (synthetic trace or rescaled window); omit for the trace's own arrivals"""
    seed: int = 0
    """seed of the synthetic trace and of the model draw for jobs without one"""
    sim: SimConfig = field(default_factory=SimConfig)
    """the simulator's settings (``--restart-overhead`` sets its restart overhead)"""


def parse(argv: list[str] | None = None) -> ReplayArgs:
    parser = argparse.ArgumentParser(prog="python -m baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ReplayArgs()
    parser.add_argument("--trace", default=defaults.trace)
    parser.add_argument("--cluster", default=defaults.cluster, choices=sorted(clusters.PRESETS))
    parser.add_argument("--policy", default=defaults.policy)
    parser.add_argument("--num-jobs", type=int, default=defaults.num_jobs)
    parser.add_argument("--load", type=lambda s: None if s.lower() == "none" else float(s), default=defaults.load)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--restart-overhead", type=float, default=defaults.sim.restart_overhead)
    args = vars(parser.parse_args(argv))
    sim = defaults.sim.replace(restart_overhead=args.pop("restart_overhead"))
    return ReplayArgs(**args, sim=sim)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    spec = clusters.get(args.cluster)
    if args.trace is None:
        trace = synthetic(args.num_jobs or 2000, load=args.load or 0.9, cluster=spec, seed=args.seed)
    else:
        trace = load_trace(args.trace)
        if args.num_jobs:
            trace = window(trace, 0.0, num_jobs=min(args.num_jobs, len(trace)), load=args.load, cluster=spec)
    policy = baselines.get(args.policy)
    res = simulate(trace, spec, policy, sim=args.sim, seed=args.seed, progress=True)
    print(f"\n{policy.name} on {spec!r}: {len(trace)} jobs, {res.events} events, "
          f"{res.wall_time:.2f} s ({len(trace) / res.wall_time:,.0f} jobs/s)")
    for key, value in res.metrics.items():
        print(f"  {key:<22} {value:,.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
