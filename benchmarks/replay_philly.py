"""Replay the Philly trace (``pollux_philly.csv.gz``, 82,247 jobs) under each classic baseline.

For each policy: wall time, jobs/s, events, and the metrics of DESIGN section 6 (avg/p99 JCT,
makespan, utilisation, max rho, unfair fraction, preemptions) on the Philly cluster
(``traces.clusters.philly()``, 2,490 GPUs), with the policy's own round length and the core's
defaults (30 s restart overhead, consolidate-first placement, known durations for the oracle
policies).

    python benchmarks/replay_philly.py [--policies fifo las ...] [--limit JOBS] [--load L]
                                       [--trace PATH] [--elastic-fraction F] [--profile NAME]

``--limit`` replays only the first JOBS jobs; ``--load`` rescales all arrival times by one factor
so that the offered load on the cluster is L (the trace as recorded offers 0.15 of Philly's GPUs:
nothing ever queues and every policy gives the same schedule); ``--profile`` prints a cProfile
summary of one policy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import baselines
import envs
import traces
from traces import clusters
from traces.paths import shared_file

COLUMNS = (  # (name, width, format)
    ("policy", 9, "<"), ("wall_s", 7, ">.1f"), ("jobs/s", 7, ">.0f"), ("events", 8, ">d"),
    ("avg_jct_h", 9, ">.2f"), ("p99_jct_h", 9, ">.1f"), ("makespan_d", 10, ">.1f"),
    ("util", 6, ">.3f"), ("max_rho", 10, ">.1f"), ("unfair", 6, ">.3f"), ("preempt", 8, ">d"),
)


def row(name: str, res: envs.SimulationResult) -> str:
    m = res.metrics
    values = (name, res.wall_time, m["jobs"] / res.wall_time, res.events, m["avg_jct"] / 3600,
              m["p99_jct"] / 3600, m["makespan"] / 86400, m["utilization"], m["max_rho"],
              m["unfair_fraction"], int(m["preemptions"]))
    return " ".join(f"{v:{fmt[0]}{width}{fmt[1:]}}" for (_, width, fmt), v in zip(COLUMNS, values, strict=True))


def header() -> str:
    return " ".join(f"{name:{fmt[0]}{width}}" for name, width, fmt in COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=baselines.names(), choices=baselines.names())
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N jobs")
    parser.add_argument("--load", type=float, default=None, help="rescale arrivals to this offered load")
    parser.add_argument("--trace", default=None, help="trace file (default: the shared Pollux Philly CSV)")
    parser.add_argument("--elastic-fraction", type=float, default=0.0,
                        help="fraction of scalable jobs made elastic (Optimus uses them)")
    parser.add_argument("--profile", default=None, choices=baselines.names(), help="cProfile this policy")
    args = parser.parse_args()

    path = args.trace or shared_file("traces", "philly", "pollux_philly.csv.gz")
    if path is None:
        sys.exit("the Philly trace is not present (../shared/traces/philly/pollux_philly.csv.gz); pass --trace")
    trace = traces.load_trace(path)
    if args.limit is not None:
        trace = trace.iloc[: args.limit].reset_index(drop=True)
    cluster = clusters.philly()
    if args.load is not None:
        trace = traces.window(trace, 0.0, num_jobs=len(trace), load=args.load, cluster=cluster)
    print(f"trace: {path} ({len(trace):,} jobs), cluster: {cluster.name} ({cluster.num_gpus:,} GPUs), "
          f"offered load {traces.offered_load(trace, cluster):.3f}", flush=True)
    print(header(), flush=True)
    for name in args.policies:
        policy = baselines.get(name)
        if name == args.profile:
            prof = cProfile.Profile()
            prof.enable()
        res = envs.simulate(trace, cluster, policy, elastic_fraction=args.elastic_fraction)
        print(row(name, res), flush=True)
        if name == args.profile:
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
            print(out.getvalue(), flush=True)


if __name__ == "__main__":
    main()
