"""Themis (Mahajan et al., NSDI'20): finish-time fairness through partial-allocation auctions.

Paper: "Themis: Fair and Efficient GPU Cluster Scheduling", NSDI'20; metric, auction and knobs
as summarised in ``../shared/papers/classic.md`` section 4.

Finish-time fairness, the variant implemented (the simulator's own metric, DESIGN section 6 and
:mod:`envs.metrics`): rho = T_sh / T_id with

- T_sh = time since arrival + remaining work / current rate (for a waiting job, its rate alone on
  its requested GPUs of the fastest type): the finish time if nothing changes;
- T_id = its run time alone on the reference GPUs x max(1, N_avg x requested GPUs / cluster GPUs):
  its finish time on an exclusive 1/N_avg share, N_avg being the time-averaged number of jobs in
  the system over the job's lifetime so far (Themis' lifetime-average N, section 3.2), tracked
  by the policy from the clock.

Models:

- Leases: a job that gets GPUs holds them for ``lease`` seconds; its GPUs go back to auction only
  when the lease expires (it may win them again, which renews the lease at no cost) or when it
  finishes. Leases are per job, so they expire at staggered times. The policy checks expiries at
  every event and every ``tick`` seconds (the core's round length).
- Auction, whenever GPUs are free or leases have expired: all jobs are ranked by rho, worst
  first; only the worst ceil((1 - f) N) take part (fairness knob ``f``). The GPUs on offer (free
  ones and those of expired leases) go to participants worst-rho first, each with its whole gang
  (greedy worst-rho-first allocation, the approximation classic.md allows for the
  partial-allocation auction); leftover GPUs go, work-conserving, to the other jobs: expired
  holders keep theirs (no restart), then waiting jobs by rho. Jobs with a live lease are never
  preempted.

Simplifies:

- Apps are single jobs (Themis' apps are groups of hyper-parameter trials).
- The partial-allocation auction is not run: with rigid gangs on identical GPUs a bid table has a
  single useful bundle (the gang) and the Nash-welfare maximisation with hidden payments is
  replaced by greedy worst-rho-first; valuations are not placement-aware (the placer consolidates
  when it can).
- Lease expiries are noticed at the next event or tick (at most ``tick`` seconds late).
- Remaining work is the oracle value (``needs_durations = True``); Themis' agents estimate it.

Knobs: ``f=0.8`` (fairness knob) and ``lease=600`` s (10 minutes): the paper's evaluation defaults
as classic.md recalls them (tagged from memory there); ``tick=60`` s (lease-expiry check period).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from baselines.base import EMPTY, Baseline, BaselineKnobs, order_scores
from envs.policy import ClusterView, Priority


class Themis(Baseline):
    """Finish-time fairness: worst rho first among the worst (1 - f) fraction, leases."""

    name = "themis"
    needs_durations = True
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "cont0": (np.float64, 0.0),  # contention integral when the job arrived
        "lease_end": (np.float64, np.nan),  # end of its lease (NaN: holds no GPUs)
    }
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "last_clock": (np.float64, np.nan),
        "count": (np.float64, 0.0),  # jobs in the system since the last decision
        "cont": (np.float64, 0.0),  # integral of jobs in the system over time
    }

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        f: float = 0.8
        """fairness knob: only the worst (1 - f) fraction of jobs by rho bid (paper 0.8)"""
        lease: float = 600.0
        """GPU lease length, seconds (paper: 10 minutes)"""
        tick: float | None = 60.0
        """lease-expiry check period, seconds (``None``: events only)"""

        def __post_init__(self) -> None:
            f, lease, tick = self.f, self.lease, self.tick
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"f must be in [0, 1], got {f}")
            if not lease > 0:
                raise ValueError(f"lease must be > 0 seconds, got {lease}")
            if tick is not None and not tick > 0:
                raise ValueError(f"tick must be > 0 seconds or None, got {tick}")
            self._set(f=float(f), lease=float(lease), tick=None if tick is None else float(tick))

    def _derive(self) -> None:
        self.round_length = self.tick

    def _track(self, view: ClusterView) -> tuple[np.ndarray, np.ndarray]:
        """Per-decision bookkeeping: the contention integral, each job's value of it at arrival,
        and the leases. Returns the lease end of each running job (NaN otherwise) and the
        contention integral ``(E, 1)``."""
        jt = self.jobs
        jt.ensure(view)
        active = view.status != EMPTY
        clock = view.clock
        last = self.envs["last_clock"]
        prev = np.where(np.isnan(last), clock, last)
        self.envs["cont"] = self.envs["cont"] + self.envs["count"] * (clock - prev)
        self.envs["last_clock"] = clock.copy()
        self.envs["count"] = active.sum(axis=1).astype(np.float64)
        cont = self.envs["cont"][:, None]
        # a job seen for the first time arrived now (if the policy joined an episode midway, the
        # contention before it joined is unknown and counted as none)
        new = active & ~jt.gather("seen", view)
        if new.any():
            jt.scatter("seen", view, True, new)
            jt.scatter("cont0", view, cont, new)
        # leases: jobs started at the previous decision (time prev) get one; jobs whose lease had
        # expired by then and still hold their GPUs won them again: renewed from prev
        run = view.running
        end0 = jt.gather("lease_end", view)
        p = prev[:, None]
        renew = run & (np.isnan(end0) | (end0 <= p))
        end = np.where(renew, p + self.lease, end0)
        lost = ~run & ~np.isnan(end0)
        end = np.where(run, end, np.nan)
        if (active & (renew | lost)).any():
            jt.scatter("lease_end", view, end, active & (renew | lost))
        return end, cont

    def rho(self, view: ClusterView, cont: np.ndarray | None = None) -> np.ndarray:
        """``(E, S)`` estimated finish-time fairness of each job now (NaN for empty slots)."""
        if cont is None:
            cont = self.envs["cont"][:, None]
        active = view.status != EMPTY
        count = active.sum(axis=1)
        elapsed = view.clock[:, None] - view.submit
        cont0 = self.jobs.gather("cont0", view)
        with np.errstate(divide="ignore", invalid="ignore"):
            n_avg = np.where(elapsed > 0, (cont - cont0) / elapsed, count[:, None])
        n_avg = np.maximum(n_avg, 1.0)
        best = view.speed.max(axis=1)[view.model]
        rate = np.where(view.running & (view.rate > 0), view.rate, best)
        t_sh = elapsed + view.remaining / rate
        t_id = view.work * np.maximum(1.0, n_avg * view.gpus / view.total_gpus)
        return np.where(active, t_sh / t_id, np.nan)

    def plan(self, view: ClusterView) -> Priority | None:
        end, cont = self._track(view)
        wait = view.waiting
        run = view.running
        held = run & (end > view.clock[:, None] + 1e-9)  # live lease: never preempted
        free = view.free_per_type().max(axis=1)
        smallest = np.where(wait, view.gpus, np.iinfo(np.int64).max).min(axis=1)
        if not (wait.any(axis=1) & ((smallest <= free) | (run & ~held).any(axis=1))).any():
            return None  # no auction: nothing free that fits and no expired lease with jobs waiting
        rho = self.rho(view, cont)
        active = view.status != EMPTY
        count = active.sum(axis=1)
        k = np.ceil((1.0 - self.f) * count - 1e-9).astype(np.int64)
        k = np.where(count > 0, np.maximum(k, 1), 0)  # at least the worst job takes part
        worst = order_scores(view, [-np.nan_to_num(rho, nan=-np.inf)], active)
        # order_scores gives S, S-1, ... to the worst, next, ...; participants are the top k
        S = view.job.shape[1]
        part = active & (worst > (S - k)[:, None])
        cls = np.where(held, 0, np.where(part, 1, np.where(run, 2, 3)))
        scores = order_scores(view, [cls, -rho], active)
        return Priority(scores, preempt=True)
