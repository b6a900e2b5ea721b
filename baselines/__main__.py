"""Replay a trace under a scheduler and print its metrics.

Default: 2,000 synthetic Philly-like jobs at offered load 0.9 on the ``small`` cluster (8 nodes
x 8 V100, 64 GPUs), under FIFO. A trace file is replayed from its start: ``--num-jobs`` jobs
rescaled to ``--load`` on the cluster (``--num-jobs 0 --load none``: the whole trace at its own
arrivals).
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
    plot: str | None = None
    """PNG file to draw the replay's timeline into (``envs.plots.plot_timeline``); none: no plot"""


EXAMPLES = """examples:
  python -m baselines --policy tiresias                  # the synthetic default
  python -m baselines --policy tiresias --load 1.2 --num-jobs 5000
  python -m baselines --policy tiresias --cluster tiny --num-jobs 80 --load 1.5 --plot timeline.png
  python -m baselines --policy fifo --trace ../shared/traces/philly/pollux_philly.csv.gz --cluster small \\
      --num-jobs 5000 --load 1.0                         # Philly's first 5,000 jobs, contending for 64 GPUs
"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The description and examples as written, and every option's default."""


def _load(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def parse(argv: list[str] | None = None) -> ReplayArgs:
    """:class:`ReplayArgs` from the command line."""
    parser = argparse.ArgumentParser(prog="python -m baselines", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=HelpFormatter)
    defaults = ReplayArgs()
    parser.add_argument("--trace", default=defaults.trace, metavar="FILE",
                        help="trace file (any format traces.load_trace reads); none: the synthetic generator")
    parser.add_argument("--cluster", default=defaults.cluster, choices=sorted(clusters.PRESETS),
                        help="cluster preset (traces.clusters.PRESETS)")
    parser.add_argument("--policy", default=defaults.policy, choices=baselines.names(), metavar="NAME",
                        help="scheduler, one of: " + ", ".join(baselines.names()))
    parser.add_argument("--num-jobs", type=int, default=defaults.num_jobs,
                        help="jobs to replay: a window from the start of the trace (0: the whole trace)")
    parser.add_argument("--load", type=_load, default=defaults.load,
                        help="target offered load of the jobs on the cluster ('none': a trace's own arrivals)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the synthetic trace and of the model draw for jobs without one")
    parser.add_argument("--restart-overhead", type=float, default=defaults.sim.restart_overhead, metavar="SECONDS",
                        help="seconds a preempted or resized job loses when it restarts (SimConfig.restart_overhead)")
    parser.add_argument("--plot", default=defaults.plot, metavar="PNG",
                        help="draw GPUs busy, jobs queued and (up to 200 jobs) a Gantt chart of the replay into this PNG file")
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
    if args.plot is None:
        res = simulate(trace, spec, policy, sim=args.sim, seed=args.seed, progress=True)
    else:
        from envs.plots import plot_timeline, simulate_with_timeline

        res = simulate_with_timeline(trace, spec, policy, sim=args.sim, seed=args.seed, progress=True)
    print(f"\n{policy.name} on {spec!r}: {len(trace)} jobs, {res.events} events, "
          f"{res.wall_time:.2f} s ({len(trace) / res.wall_time:,.0f} jobs/s)")
    for key, value in res.metrics.items():
        print(f"  {key:<22} {value:,.4f}")
    if args.plot is not None:
        plot_timeline(res, args.plot)
        print(f"timeline: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
