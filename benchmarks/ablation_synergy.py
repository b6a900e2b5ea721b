"""Synergy-TUNE vs GPU-proportional CPU/memory allocation (same LAS GPU admission), moving one
difference at a time from the test's setting toward the paper's (cumulative).

Paper (Synergy, OSDI'22): up to 3.4x lower average JCT than GPU-proportional allocation, on a
simulated 128-GPU cluster of 8-GPU servers with 24 CPUs and 500 GB, Philly-derived traces, job
mix 34% image / 33% language / 33% speech.

Rows:

0. the test's setting (``tests/test_synergy.py``): 4 servers (32 GPUs), a CPU-heavy mix
   (single-GPU jobs 35% ResNet-18, 25% A3C, 15% CycleGAN, 5% ResNet-50, 10% Transformer, 10% LM),
   100 jobs at offered load 1.0.
1. the paper's cluster: 16 servers (128 GPUs), 400 jobs.
2. the paper's job mix (:func:`leaderboard.paper_workloads.synergy_trace`, proxies for its models).
3. offered load 0.6, 1.2 and 1.6 instead of 1.0 (Synergy's "up to" is over a load sweep).
4. FIFO host order instead of LAS (at load 1.2).
5. capacity: every job submitted at t = 0; the GPU-hours of the jobs finished by 10,000 s (the
   cluster is full until then), TUNE / proportional: the throughput gain of TUNE on a full
   cluster, which bounds what it can do for queueing. (Makespan is no measure of it here: it is
   the tail of the longest jobs, and on seed 3 a 4-GPU LM gang that TUNE's round left spread over
   two servers runs at 0.46x for 7 hours.)
6. steady state near saturation: 2,000 jobs of Synergy's mix on 128 GPUs under FIFO host order
   at loads 0.8, 0.9 and 0.95 (where queueing should matter most; several minutes per window).

Each cell is the mean over seeds with a 95% t-interval; ratio = proportional / TUNE average JCT
(row 5: TUNE / proportional work done) per seed, then averaged. ``python benchmarks/ablation_synergy.py [--seeds 0 1 2 3] [--jobs 2] [--rows 0 1 ...]``
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import baselines
from envs import simulate
from leaderboard.paper_workloads import cpu_heavy_trace, synergy_cluster, synergy_trace

PAPER_RATIO = 3.4
BY = 10_000.0  # seconds: the capacity row counts the work finished by then

# (label, servers, jobs, mix, load, order, batch at t=0)
VARIANTS = [
    ("0 test setting (32 GPUs, CPU-heavy mix)", 4, 100, "heavy", 1.0, "las", False),
    ("1 + 128 GPUs, 400 jobs", 16, 400, "heavy", 1.0, "las", False),
    ("2 + Synergy's job mix", 16, 400, "synergy", 1.0, "las", False),
    ("3a   load 0.6", 16, 400, "synergy", 0.6, "las", False),
    ("3b   load 1.2", 16, 400, "synergy", 1.2, "las", False),
    ("3c   load 1.6", 16, 400, "synergy", 1.6, "las", False),
    ("4 + FIFO host order (load 1.2)", 16, 400, "synergy", 1.2, "fifo", False),
    ("5 capacity: all jobs at t=0", 16, 400, "synergy", 1.0, "las", True),
    ("6a steady state: 2,000 jobs, FIFO, load 0.8", 16, 2000, "synergy", 0.8, "fifo", False),
    ("6b   load 0.9", 16, 2000, "synergy", 0.9, "fifo", False),
    ("6c   load 0.95", 16, 2000, "synergy", 0.95, "fifo", False),
]


def run(job: tuple) -> tuple:
    """Average JCT and makespan of proportional and TUNE on one window."""
    key, (servers, n, mix, load, order, batch), seed = job[0], job[0][:6], job[1]
    spec = synergy_cluster(servers)
    tr = cpu_heavy_trace(n, load, seed, spec) if mix == "heavy" else synergy_trace(n, load, seed, cluster=spec)
    if batch:
        tr["submit_time"] = 0.0
    out = []
    for mode in ("proportional", "tune"):
        res = simulate(tr, spec, baselines.get("synergy", mode=mode, order=order), resources=True, seed=seed)
        assert res.metrics["unfinished"] == 0
        j = res.jobs
        done = float((j["duration"] * j["num_gpus"])[j["finish"] <= BY].sum()) / 3600.0
        out.append((res.metrics["avg_jct"], done))
    return (key, seed), out


def ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(4)))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--rows", type=int, nargs="+", default=None, help="row numbers to run (default: all)")
    args = parser.parse_args()
    keys = {v[1:]: v[0] for v in VARIANTS if args.rows is None or int(v[0].split()[0][0]) in args.rows}
    work = [(k, s) for k in keys for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        out = dict(pool.map(run, work))
    print(f"Synergy-TUNE vs GPU-proportional (LAS admission unless noted), seeds {args.seeds}; "
          "mean +- 95% CI half-width over seeds")
    print(f"{'variant':<42} {'metric':>9} {'proportional':>17} {'TUNE':>17} {'ratio':>15}")
    print(f"{'paper (up to)':<42} {'avg JCT':>9} {'':>17} {'':>17} {PAPER_RATIO:>15.2f}")
    for k, label in keys.items():
        col = 1 if k[-1] else 0
        prop = [out[(k, s)][0][col] for s in args.seeds]
        tune = [out[(k, s)][1][col] for s in args.seeds]
        ratio = [b / a if col else a / b for a, b in zip(prop, tune, strict=True)]  # > 1: TUNE better
        mp, mt, mr = ci(prop), ci(tune), ci(ratio)
        print(f"{label:<42} {'GPU-h@10k' if col else 'avg JCT':>9} {f'{mp[0]:,.0f} +- {mp[1]:,.0f}':>17} "
              f"{f'{mt[0]:,.0f} +- {mt[1]:,.0f}':>17} {f'{mr[0]:.2f} +- {mr[1]:.2f}':>15}")


if __name__ == "__main__":
    main()
