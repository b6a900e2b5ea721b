"""Optimus (Peng et al., EuroSys'18): greedy marginal-gain allocation to elastic jobs from an
online-fitted speed model.

Paper: "Optimus: An Efficient Dynamic Resource Scheduler for Deep Learning Clusters",
EuroSys'18; the GPU-only form follows Pollux's port ("Optimus+Oracle", ``optimus.py`` L10-79),
see ``../shared/papers/classic.md`` section 3.

Models:

- Speed model fitted online from observed throughput. Optimus' synchronous model without
  parameter servers, f(w) = 1 / (theta0 / w + theta1 + theta2 * w), theta >= 0 (concave, may turn
  down), fitted by non-negative least squares on 1 / f. Observations are the progress rates the
  core reports for running elastic jobs (``view.rate``, after any restart), normalised by the job's
  single-GPU speed on its GPU type and with w = allocated / requested GPUs; a job contributes one
  observation per allocation it has run at. A weak prior (pseudo-observations of
  w ** ``prior_scaling`` at w = 1/4 ... 4, each of weight ``prior_weight``) fills in the shape where
  the observations are silent (Optimus profiles new jobs instead), so one observed size already
  gives a usable curve and two distinct sizes set its slope.
- Remaining time T(n) = remaining work / (speed x f(n / requested)).
- Allocation: (1) in arrival order, every job gets its minimum (elastic: ``min_gpus``; rigid:
  exactly its request) while GPUs last, skipping what does not fit; (2) each further GPU goes to
  the elastic job with the largest gain T(n) - T(n + 1) (one GPU = one unit of the dominant
  resource), up to ``max_gpus``, while gains are positive and GPUs are free.
- Periodic re-allocation: every ``interval`` seconds (a round boundary) the whole allocation is
  recomputed; changed jobs restart (the core charges its restart overhead), unchanged ones keep
  their placement. Between intervals free GPUs go to waiting jobs (steps 1-2 over them only);
  running jobs are not touched.
- Placement: the core's consolidate-first placer (fewest servers, as Optimus' placement theorem).

Simplifies:

- Remaining work is the oracle value (``needs_durations = True``, as Pollux's Optimus+Oracle):
  the simulator has no loss curves to fit Optimus' convergence model to.
- One speed model per model type (pooled over its jobs, in units of the job's request) instead of
  one per job, and no profiling runs (Optimus profiles new jobs on several configurations).
- GPUs are the only resource (no parameter servers, CPU or bandwidth).
- Heterogeneity-agnostic: on a cluster with several GPU types, elastic growth is off and jobs get
  their request in arrival order (use Gavel/Sia for heterogeneity).

Knobs: ``interval=600`` s (Optimus' TS_INTERVAL; Pollux's port uses 60 s), ``prior_scaling=0.8``,
``prior_weight=0.001``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.optimize import nnls

from baselines.base import EMPTY, WAITING, Baseline, BaselineKnobs, greedy_allocation, order_scores
from envs.policy import Allocation, ClusterView, Priority
from traces import models

_PRIOR_X = np.array([0.25, 0.5, 1.0, 2.0, 4.0])


def _features(x: np.ndarray) -> np.ndarray:
    return np.stack([1.0 / x, np.ones_like(x), x], axis=-1)


class Optimus(Baseline):
    """Marginal-gain GPU allocation to elastic jobs from a fitted speed model."""

    name = "optimus"
    needs_durations = True
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {"obs_n": (np.int64, 0)}  # allocation last recorded as an observation

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        interval: float = 600.0
        """re-allocation period, seconds (Optimus' TS_INTERVAL; Pollux's port uses 60 s)"""
        prior_scaling: float = 0.8
        """exponent of the prior speed curve ``w ** prior_scaling`` before any observation"""
        prior_weight: float = 1e-3
        """weight of the prior points in the speed-model fit (> 0)"""

        def __post_init__(self) -> None:
            if not self.interval > 0:
                raise ValueError(f"interval must be > 0 seconds, got {self.interval}")
            if not self.prior_weight > 0:
                raise ValueError(f"prior_weight must be > 0, got {self.prior_weight}")
            self._set(interval=float(self.interval), prior_scaling=float(self.prior_scaling),
                      prior_weight=float(self.prior_weight))

    def _derive(self) -> None:
        self.round_length = self.interval
        self._obs: list[dict[float, list[float]]] = []
        self.theta = np.zeros((len(models.MODELS), 3))

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        self._obs = [{} for _ in models.MODELS]  # per model: w -> [sum of 1/f, count]
        for m in range(len(models.MODELS)):
            self._fit(m)

    # ------------------------------------------------------------------ speed model
    def _fit(self, m: int) -> None:
        xs = [_PRIOR_X]
        zs = [_PRIOR_X ** -self.prior_scaling]
        ws = [np.full(len(_PRIOR_X), self.prior_weight)]
        if self._obs[m]:
            x = np.array(list(self._obs[m]), dtype=np.float64)
            sums = np.array(list(self._obs[m].values()), dtype=np.float64)
            xs.append(x)
            zs.append(sums[:, 0] / sums[:, 1])
            ws.append(sums[:, 1])
        x, z, w = np.concatenate(xs), np.concatenate(zs), np.sqrt(np.concatenate(ws))
        self.theta[m], _ = nnls(_features(x) * w[:, None], z * w)

    def speed(self, model: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Fitted relative throughput f(w) of jobs of ``model`` at ``w`` x their request."""
        w = np.maximum(np.asarray(w, dtype=np.float64), 1e-9)
        inv = (_features(w) * self.theta[model]).sum(axis=-1)
        return np.where(inv > 0, 1.0 / np.maximum(inv, 1e-300), np.inf)

    def observe(self, view: ClusterView) -> None:
        """Record the throughput of running elastic jobs at allocations not seen yet for them
        (rigid jobs only ever run at their request, where the curve is 1 by definition)."""
        jt = self.jobs
        elastic = (view.min_gpus != view.gpus) | (view.max_gpus != view.gpus)
        run = view.running & elastic
        if not run.any():
            return
        n = view.allocated
        fresh = run & ~view.restarting & (view.rate > 0) & (jt.gather("obs_n", view) != n)
        if not fresh.any():
            return
        jt.scatter("obs_n", view, n, fresh)
        e, s = np.nonzero(fresh)
        model = view.model[e, s]
        base = view.speed[model, view.gpu_type[e, s]]
        w = n[e, s] / view.gpus[e, s]
        z = base / view.rate[e, s]
        touched = set()
        for m, wi, zi in zip(model.tolist(), w.tolist(), z.tolist(), strict=True):
            acc = self._obs[m].setdefault(round(wi, 6), [0.0, 0.0])
            acc[0] += zi
            acc[1] += 1.0
            touched.add(m)
        for m in touched:
            self._fit(m)

    # ------------------------------------------------------------------ allocation
    def plan(self, view: ClusterView) -> Allocation | Priority | None:
        self.jobs.ensure(view)
        self.observe(view)
        st = view.status
        active = st != EMPTY
        realloc = view.at_round_boundary
        elastic = (view.min_gpus != view.gpus) | (view.max_gpus != view.gpus)
        minimum = np.where(elastic, view.min_gpus, view.gpus)
        if not realloc.any():
            smallest = np.where(st == WAITING, minimum, np.iinfo(np.int64).max).min(axis=1)
            if (smallest > view.free_per_type().max(axis=1)).all():
                return None  # between intervals only waiting jobs start, and none fits
        arrival = order_scores(view, [view.submit], active)
        if len(view.capacity) != 1:
            return Priority(arrival, preempt=realloc.copy())
        if not realloc.any() and not (elastic & (st == WAITING)).any():
            # between intervals with only rigid jobs waiting, step 1 is the core's greedy
            return Priority(np.where(st == WAITING, arrival, -np.inf))
        # step 1: minimum shares in arrival order (all jobs at a re-allocation, else waiting ones)
        n, t = greedy_allocation(view, arrival, preempt=realloc, request=minimum)
        growable = elastic & (n > 0) & (realloc[:, None] | (st == WAITING))
        used = np.where(realloc, n.sum(axis=1), np.where(st == WAITING, n, 0).sum(axis=1))
        free = np.where(realloc, int(view.capacity[0]), view.free_per_type()[:, 0]) - used
        if growable.any() and (free > 0).any():
            n = n + self._extra(view, n, growable, free)
        t = np.where(n > 0, 0, view.gpu_type)
        return Allocation(n, t)

    def _extra(self, view: ClusterView, n: np.ndarray, growable: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Step 2 as water-filling: with concave speed the greedy's choices are the ``free``
        largest marginal gains over all (job, next GPU) pairs."""
        E, S = n.shape
        room = np.where(growable, view.max_gpus - n, 0)
        K = int(room.max(initial=0))
        if K == 0:
            return np.zeros_like(n)
        k = np.arange(K + 1)[None, None, :]
        size = n[:, :, None] + k  # (E, S, K+1)
        req = view.gpus[:, :, None]
        model = np.broadcast_to(view.model[:, :, None], size.shape)
        f = self.speed(model, size / req)
        base = view.speed[view.model, 0][:, :, None]
        time_left = view.remaining[:, :, None] / (base * f)
        gain = time_left[:, :, :-1] - time_left[:, :, 1:]  # (E, S, K): the (k+1)-th extra GPU
        gain = np.minimum.accumulate(np.where(np.isfinite(gain), gain, -np.inf), axis=2)
        ok = (k[:, :, :-1] < room[:, :, None]) & (gain > 0)
        flat = np.where(ok, gain, -np.inf).reshape(E, S * K)
        job = np.broadcast_to(view.job[:, :, None], (E, S, K)).reshape(E, S * K)
        step = np.broadcast_to(np.arange(K), (E, S, K)).reshape(E, S * K)
        order = np.lexsort((step, job, -flat), axis=1)  # best gain first, ties to the earlier job
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(S * K)[None, :].repeat(E, 0), axis=1)
        take = (rank < free[:, None]) & np.isfinite(flat)
        return take.reshape(E, S, K).sum(axis=2)
