"""The shipped pretrained agents on traces and clusters they were not trained on, judged by
train.py's protocol: the held-out (test) part of a trace split by time, contended windows, every
judged baseline on the same windows and seeds, paired 95% bootstrap CIs of the ratio.

Settings (``--settings``):

- ``synthetic-tiny``: the synthetic default of ``python train.py`` (20,000 jobs at load 1.0 on
  ``tiny``; 64-job windows): another trace than the agents' Philly.
- ``philly-small``: the Philly test part on ``small`` (8 x 8 V100, 64 GPUs) in 500-job windows at
  load 1.0: another cluster size and scale than the 8-GPU, 64-job training windows.

``python benchmarks/pretrained_transfer.py [--settings synthetic-tiny philly-small] [--windows 30]
[--seeds 2] [--workers 2]``; baseline episodes are cached as train.py caches them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import AgentPolicy, pretrained_names
from agents.evaluation import (
    EpisodeCache,
    contended_windows,
    evaluate_baselines,
    final_table,
    run_policy,
    split_by_time,
)
from baselines import get as get_baseline
from envs.workload import drop_oversize
from traces import clusters, load_trace, synthetic, window
from traces.clusters import ClusterSpec
from traces.paths import PHILLY_POLLUX_CSV, shared_file
from train import PRESET_BASELINES

SETTINGS = {"synthetic-tiny": ("synthetic", "tiny", 64), "philly-small": ("philly", "small", 500)}


def held_out(source: str, spec: ClusterSpec) -> pd.DataFrame:
    """The held-out part (train.py's 60/10/30 split by time) of the setting's trace at load 1.0."""
    if source == "synthetic":
        trace = synthetic(20_000, load=1.0, cluster=spec, seed=0)
    else:
        path = shared_file(*PHILLY_POLLUX_CSV)
        if path is None:
            sys.exit("philly-small needs ../shared/traces/philly/pollux_philly.csv.gz")
        trace, _ = drop_oversize(load_trace(path), spec, source=str(path))
        trace = window(trace, 0.0, num_jobs=len(trace), load=1.0, cluster=spec)
    return split_by_time(trace, 0.7, 0.1).test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--windows", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = PRESET_BASELINES.split(",")
    seeds = list(range(args.seeds))
    for setting in args.settings:
        source, cluster, num_jobs = SETTINGS[setting]
        spec = clusters.get(cluster)
        started = time.time()
        windows = contended_windows(held_out(source, spec), num_jobs, args.windows, spec, split="test")
        base = evaluate_baselines(windows, spec, names, seeds, cache=EpisodeCache(), workers=args.workers)
        oracle = {n: get_baseline(n).needs_durations for n in names}
        for agent in pretrained_names():
            policy = AgentPolicy(agent)
            runs = {"agent": run_policy(windows, seeds, spec, lambda a=agent: AgentPolicy(a), policy.needs_durations),
                    **base}
            table = final_table(runs, {**oracle, "agent": policy.needs_durations}).set_index("policy")
            row, best = table.loc["agent"], table.attrs["best"]
            print(f"{setting}: {windows.describe()}, seeds {seeds}")
            for track, col in (("non-clairvoyant", "vs_best_nonoracle"), ("clairvoyant", "vs_best_oracle")):
                ref = best[track]
                print(f"  {agent}: avg JCT {row['avg_jct']:,.0f} s = {row[col]:.3f} [{row[f'{col}_low']:.3f}, "
                      f"{row[f'{col}_high']:.3f}] x best {track} baseline {ref} ({table.loc[ref, 'avg_jct']:,.0f} s), "
                      f"W/T/L {table.loc[ref, 'agent_w/t/l']}")
        print(f"  ({time.time() - started:,.0f} s)")


if __name__ == "__main__":
    main()
