"""Shockwave vs Gavel-LAS in the artifact's 32-GPU setting, moving one difference at a time from
the simulator's defaults toward the artifact's (cumulative: each row keeps the changes above it).

Workload: :func:`leaderboard.paper_workloads.shockwave_trace` (120 jobs, every one dynamically
adapting) on :data:`leaderboard.paper_workloads.TACC_32`. Paper (Shockwave artifact, TACC 32 GPUs):
unfair fraction 5% (Shockwave) vs 25% (Gavel), makespan 24,197 s vs 33,208 s.

Rows:

0. the simulator's defaults: Themis' rho (1/n share, n the jobs met, scaled by GPUs), rho > 1
   unfair; Gavel rounds of 360 s; 30 s restart per resume; run time alone = drawn duration.
1. the artifact's unfairness metric: rho = JCT / (run time alone x 120 / 32), unfair if > 1.05
   (:func:`baselines.shockwave.artifact_unfair_fraction`).
2. Gavel at the artifact's round of 120 s (its reproduce script runs every policy at 120 s).
3. no restart overhead (the artifact's simulator charges none).
4. the drawn duration is the run time at the initial batch size (adapting jobs finish sooner
   alone; :func:`leaderboard.paper_workloads.static_batch_durations`).
5. Shockwave's fair share min(1, G / N) (the artifact's; the share its metric also uses) rather
   than min(1, G / (N x GPUs)).
6. Shockwave's other artifact knob values (``k=1e-3``, breakpoints 0, .2, ..., 1, the artifact's
   FTF rule, no restart awareness; window 8 rounds).
7. row 5 with the artifact's planning window of 20 rounds (``future_rounds=20``; default 8).
8. row 5 with the artifact's solver budget: no branch-and-bound node limit, HiGHS run to its
   1e-3 gap or 15 s (the artifact: 15 s on 24 threads; a time limit makes the result depend
   on the machine's speed).
9. rows 7 and 8 together.

Reference row: earliest deadline first on the metric's own deadlines (submit + 3.75 x run time
alone; an oracle, preemptive at every event) in the setting of row 4, to show what the metric
allows on this workload.

Each cell is the mean over seeds with a 95% t-interval over seeds; ratio = Shockwave / Gavel
per seed, then averaged. ``python benchmarks/ablation_shockwave.py [--seeds 0 1 2 3 4 5] [--jobs 2]``
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
from baselines.base import EMPTY, Baseline
from baselines.shockwave import ARTIFACT_LOG_BASES, artifact_unfair_fraction
from envs import simulate
from envs.policy import ClusterView, Priority
from leaderboard.paper_workloads import TACC_32, shockwave_trace, static_batch_durations

PAPER = {"sw_unfair": 0.05, "gv_unfair": 0.25, "sw_makespan": 24197.0, "gv_makespan": 33208.0}
SHARE = {"fair_share": "jobs"}
ARTIFACT_KNOBS = {"k": 1e-3, "log_bases": ARTIFACT_LOG_BASES, "fair_share": "jobs", "ftf": "artifact",
                  "restart_aware": False}
CONTENTION = 120 / TACC_32.num_gpus  # the artifact's static contention factor for its 120-job trace

# (label, metric, gavel round, restart overhead, static-batch durations, shockwave knobs)
VARIANTS = [
    ("0 simulator defaults (Themis rho > 1)", "themis", 360.0, 30.0, False, {}),
    ("1 + artifact metric (N/G share, > 1.05)", "artifact", 360.0, 30.0, False, {}),
    ("2 + Gavel round 120 s", "artifact", 120.0, 30.0, False, {}),
    ("3 + no restart overhead", "artifact", 120.0, 0.0, False, {}),
    ("4 + duration at initial batch size", "artifact", 120.0, 0.0, True, {}),
    ("5 + Shockwave fair share min(1, G/N)", "artifact", 120.0, 0.0, True, SHARE),
    ("6 + Shockwave's other artifact knobs", "artifact", 120.0, 0.0, True, ARTIFACT_KNOBS),
    ("7 row 5 + artifact window of 20 rounds", "artifact", 120.0, 0.0, True, {**SHARE, "future_rounds": 20}),
    ("8 row 5 + solver to 1e-3 gap or 15 s", "artifact", 120.0, 0.0, True,
     {**SHARE, "node_limit": None, "time_limit": 15.0}),
    ("9 row 5 + both (7 and 8)", "artifact", 120.0, 0.0, True,
     {**SHARE, "future_rounds": 20, "node_limit": None, "time_limit": 15.0}),
]


class DeadlineFirst(Baseline):
    """Earliest deadline first, deadline = submit + :data:`CONTENTION` x run time alone (the
    artifact metric's fair finish time); preemptive at every event. An oracle reference."""

    name = "edf"
    needs_durations = True

    def plan(self, view: ClusterView) -> Priority:
        deadline = view.submit + CONTENTION * view.work
        return Priority(np.where(view.status != EMPTY, -deadline, -np.inf), preempt=True)



def run(job: tuple) -> tuple:
    """One replay: ``(key, unfair (themis), unfair (artifact), makespan)``."""
    key, name, seed, round_length, restart, static, knobs = job
    trace = shockwave_trace(120, seed)
    if static:
        trace = static_batch_durations(trace, TACC_32, seed=seed)
    kw = dict(knobs)
    if name == "gavel":
        kw["round_length"] = round_length
    policy = DeadlineFirst() if name == "edf" else baselines.get(name, **kw)
    res = simulate(trace, TACC_32, policy, dynamic_fraction=1.0, restart_overhead=restart, seed=seed,
                   round_length=120.0 if name == "edf" else None)
    assert res.metrics["unfinished"] == 0
    return (key, res.metrics["unfair_fraction"], artifact_unfair_fraction(res.jobs, TACC_32.num_gpus),
            res.metrics["makespan"])


def ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def fmt(m: tuple[float, float], digits: int = 3) -> str:
    return f"{m[0]:.{digits}f} +- {m[1]:.{digits}f}" if digits else f"{m[0]:,.0f} +- {m[1]:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(6)))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    jobs = {}
    for _label, _metric, gr, ro, static, knobs in VARIANTS:
        for seed in args.seeds:
            sw = ("shockwave", seed, 120.0, ro, static, tuple(sorted(knobs.items())))
            gv = ("gavel", seed, gr, ro, static, ())
            for key in (sw, gv):
                jobs[key] = (key, key[0], seed, key[2], ro, static, dict(key[5]))
    for seed in args.seeds:
        edf = ("edf", seed, 120.0, 0.0, True, ())
        jobs[edf] = (edf, "edf", seed, 120.0, 0.0, True, {})
    with ProcessPoolExecutor(args.jobs) as pool:
        out = {r[0]: r[1:] for r in pool.map(run, jobs.values())}
    print(f"Shockwave vs Gavel-LAS, artifact setting (120 jobs, 32 GPUs), seeds {args.seeds}; "
          "mean +- 95% CI half-width over seeds")
    print(f"{'variant':<42} {'SW unfair':>15} {'Gavel unfair':>15} {'ratio':>15} {'SW makespan':>17} "
          f"{'Gavel makespan':>17} {'ratio':>15}")
    print(f"{'paper (artifact, one trace)':<42} {PAPER['sw_unfair']:>15.3f} {PAPER['gv_unfair']:>15.3f} "
          f"{PAPER['sw_unfair'] / PAPER['gv_unfair']:>15.3f} {PAPER['sw_makespan']:>17,.0f} "
          f"{PAPER['gv_makespan']:>17,.0f} {PAPER['sw_makespan'] / PAPER['gv_makespan']:>15.3f}")
    for label, metric, gr, ro, static, knobs in VARIANTS:
        col = 0 if metric == "themis" else 1
        sw = [out[("shockwave", s, 120.0, ro, static, tuple(sorted(knobs.items())))] for s in args.seeds]
        gv = [out[("gavel", s, gr, ro, static, ())] for s in args.seeds]
        su, gu = [a[col] for a in sw], [b[col] for b in gv]
        sm, gm = [a[2] for a in sw], [b[2] for b in gv]
        ru = [a / b if b > 0 else np.nan for a, b in zip(su, gu, strict=True)]
        rm = [a / b for a, b in zip(sm, gm, strict=True)]
        print(f"{label:<42} {fmt(ci(su)):>15} {fmt(ci(gu)):>15} {fmt(ci(ru)):>15} {fmt(ci(sm), 0):>17} "
              f"{fmt(ci(gm), 0):>17} {fmt(ci(rm)):>15}")
    ed = [out[("edf", s, 120.0, 0.0, True, ())] for s in args.seeds]
    print(f"{'ref: EDF on the metric deadlines (row 4)':<42} {fmt(ci([a[1] for a in ed])):>15} {'':>15} {'':>15} "
          f"{fmt(ci([a[2] for a in ed]), 0):>17}")


if __name__ == "__main__":
    main()
