"""Gavel (Narayanan et al., OSDI'20): heterogeneity-aware policies as linear programs over an
allocation matrix, realised by a round-based mechanism.

Paper: "Heterogeneity-Aware Cluster Scheduling Policies for Deep Learning Workloads", OSDI'20;
formulations, round mechanism and knob defaults as summarised in ``../shared/papers/classic.md``
section 5 (stanford-futuredata/gavel ``scheduler/policies/*.py`` and ``scheduler.py``).

Models:

- The allocation matrix X (active jobs x GPU types): X_mj is the fraction of wall time job m runs
  on s_m GPUs of type j (s_m = its requested GPUs, Gavel's scale factor). Constraints: X >= 0,
  sum_j X_mj <= 1, sum_m s_m X_mj <= N_j, and X_mj = 0 where s_m > N_j. Effective throughput
  thr(m, X) = sum_j T_mj X_mj, with T_mj the job's progress rate on s_m consolidated GPUs of type
  j (``view.rate_at``, the simulator's exact speed model: Gavel's oracle throughputs).
- Objectives (``objective``), each an LP solved with HiGHS (``scipy.optimize.linprog``):

  - ``"las"`` (max-min fairness, Gavel's LAS, ``max_min_fairness.py``): maximise
    min_m s_m thr(m, X) / thr(m, X_prop), X_prop giving every job N_j / N of each type
    (``proportional.py``: N_j / M per type, rows scaled to a largest row sum of 1). Priority
    weights w_m are all 1 (traces carry none).
  - ``"makespan"`` (``min_total_duration.py``): minimise max_m R_m / thr(m, X), R_m the remaining
    work. Gavel bisects on the makespan with feasibility programs; the program is directly the LP
    "maximise min_m thr(m, X) / R_m", solved once.
  - ``"ftf"`` (finish-time fairness, Gavel's formulation of Themis, ``finish_time_fairness.py``):
    minimise max_m rho(m, X), rho(m, X) = (t_m + R_m / thr(m, X)) / (t_iso_m + R_m / thr(m, X_iso)),
    t_m = time since arrival, X_iso = 1/M of each type divided by s_m (rows normalised to <= 1,
    ``isolated.py``), t_iso_m accumulating, at each recomputation, the work done since the last
    one divided by the then isolated throughput. Gavel solves the convex program with ECOS; here
    it is a bisection on rho (to 1%), each step the LP "maximise lambda s.t.
    thr(m, X) >= lambda R_m / (rho D_m - t_m)" (D_m the denominator), which is feasible for rho
    iff lambda >= 1 and whose X bounds rho from above either way.

- Heterogeneity-agnostic twins (``heterogeneity_aware=False``): LAS sets every T_mj = 1 (it then
  equalises GPU-time shares); FTF and makespan copy each job's throughput on the reference type
  (the type fastest on average over the models: V100 on Gavel's cluster) to every type, as Gavel
  copies the V100 throughput.
- Round mechanism (``scheduler.py``), every ``round_length`` = 360 s: per job and type, the wall
  time received since the last counter reset (starting at half a round, 180 s, as Gavel's
  counters do) and a deficit (time it should have had under X minus time it got) are kept per job
  (a :class:`~baselines.base.JobTable`). priority_mj = X_mj / time received on j (Gavel's
  X_mj / fraction of type-j time; the per-type normaliser does not change the order within a
  type). For each type in order (fastest on average first; for the agnostic twins the order
  rotates by one type per round, a deterministic stand-in for Gavel's shuffle) the jobs not yet
  scheduled are sorted by (priority, deficit, X_mj) descending and taken greedily when their gang
  fits in the type's GPUs left (jobs that do not fit are skipped; jobs with X_mj = 0 come last and
  fill what is left, as in Gavel); a job runs on at most one type per round. Running jobs that are
  not selected are preempted; a job selected on the type it holds keeps its placement ("lease
  extension": the core keeps unchanged allocations in place, at no restart cost).
- Recomputing X: at a round boundary at which the set of active jobs changed since the last solve
  (an arrival or a completion), and for ``ftf`` and ``makespan``, whose inputs drift with time,
  also when ``reset_interval`` has passed since the last solve. The time-received counters are
  reset (deficits kept) every ``reset_interval`` = 1920 s, Gavel's minimum time between resets.
- Between rounds (arrivals and completions), with ``work_conserving`` (default) waiting jobs fill
  free GPUs in the same order (new jobs, with no X yet, by arrival), nothing is preempted; with
  ``work_conserving=False`` nothing changes until the next round (Gavel's simulator leaves GPUs
  freed mid-round idle and places new jobs only after the next reset).
- Placement: the core's consolidate-first placer; jobs whose count and type are unchanged stay.

Simplifies:

- X is recomputed at round boundaries whenever the job set changed, not only after 1920 s: Gavel's
  gate leaves new jobs unplaced for up to half an hour, which would mostly measure the gate. The
  counter reset keeps Gavel's period, so the deficit bookkeeping spans the same windows.
- A max-min LP has many optimal X; Gavel's interior-point solver returns one in the interior of
  the optimal face, a simplex vertex may leave GPUs idle in X. A second LP therefore picks, among
  the optima (every job kept at the optimal minimum), the X of largest total objective value
  (sum of normalised throughputs): a cheap stand-in for Gavel's water-filling variant. When the
  GPUs can run every job all the time on its best type at once (no contention), that allocation
  is optimal for all three objectives and no LP is solved.
- Filling free GPUs between rounds (``work_conserving=True``, the default) departs from Gavel's
  simulator, which leaves them idle until the round ends; it applies to both twins alike.
- No space sharing (Gavel's ``_packed`` variants), no priority weights, no hierarchical policies;
  Gavel's max-sum-throughput, FIFO and AlloX policies are not included.
- Elastic jobs run at their requested size (Gavel's jobs are rigid); placement keeps the core's
  workload order instead of Gavel's largest-gang-first.
- Gavel's simulator charges no restart cost; here the core's restart overhead applies.
- One LP (or one bisection) per env that needs one, in a Python loop over those envs; everything
  else is vectorised over envs.
- In the Gymnasium env (:func:`baselines.act`) the env chooses each started job's GPU type itself,
  so on a mixed cluster only the set of jobs Gavel selects carries over, not their types.

Knobs: ``objective`` ("las", "ftf" or "makespan"), ``heterogeneity_aware`` (True),
``round_length`` (360 s, Gavel's time_per_iteration), ``reset_interval`` (1920 s, Gavel's
minimum time between allocation resets), ``work_conserving`` (True). Registered names:
``gavel`` (heterogeneity-aware LAS), ``gavel_agnostic`` (its heterogeneity-agnostic twin),
``gavel_ftf`` and ``gavel_makespan`` (heterogeneity-aware; these two need durations, as Gavel's).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from baselines.base import EMPTY, Baseline, BaselineKnobs, rows, take_in_order
from baselines.solver_output import quiet
from envs.policy import Allocation, ClusterView

__all__ = [
    "OBJECTIVES", "Gavel", "GavelAgnostic", "GavelFTF", "GavelMakespan", "all_at_best", "ftf_allocation",
    "isolated_allocation", "las_allocation", "makespan_allocation", "max_min", "proportional_allocation",
]

OBJECTIVES = ("las", "ftf", "makespan")
_FTF_TOL = 0.01  # relative gap at which the rho bisection stops
_MIN_REMAINING = 1.0  # reference-seconds; less is "about to finish" (keeps the LP well scaled)


# ---------------------------------------------------------------------------------- programs
def max_min(a: np.ndarray, scale: np.ndarray, capacity: np.ndarray, feasible: np.ndarray | None = None,
            *, efficient: bool = True) -> tuple[np.ndarray, float]:
    """Solve ``maximise z s.t. sum_j a_mj X_mj >= z`` for every job ``m`` over Gavel's allocation
    constraints (``X >= 0``, ``sum_j X_mj <= 1``, ``sum_m scale_m X_mj <= capacity_j``,
    ``X_mj = 0`` where not ``feasible``). Returns ``(X, z)``.

    ``efficient``: among the optimal X, return one of largest ``sum_mj a_mj X_mj`` (a second LP
    with every job held at the optimal ``z``), not an arbitrary vertex.
    """
    a = np.asarray(a, dtype=np.float64)
    M, T = a.shape
    if M == 0:
        return np.zeros((0, T)), math.inf
    scale = np.asarray(scale, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.float64)
    feasible = (a > 0) if feasible is None else (np.asarray(feasible, dtype=bool) & (a > 0))
    a = np.where(feasible, a, 0.0)
    best = a.max(axis=1)
    if (best <= 0).any():
        return np.zeros((M, T)), 0.0  # some job can run nowhere: the minimum is 0
    x_best = all_at_best(a, scale, capacity, feasible)
    if x_best is not None:  # no contention: every job at its own maximum is optimal
        return x_best, float(best.min())
    k = best.min()  # rescale so that z <= 1 (HiGHS' tolerances are absolute)
    a = a / k
    nx = M * T
    idx = np.arange(nx)
    m_of = np.repeat(np.arange(M), T)
    j_of = np.tile(np.arange(T), M)
    rows = np.concatenate([m_of, np.arange(M), M + m_of, 2 * M + j_of])
    cols = np.concatenate([idx, np.full(M, nx), idx, idx])
    data = np.concatenate([-a.ravel(), np.ones(M), np.ones(nx), np.repeat(scale, T)])
    A = sp.csr_matrix((data, (rows, cols)), shape=(2 * M + T, nx + 1))
    b = np.concatenate([np.zeros(M), np.ones(M), capacity])
    ub = np.append(feasible.ravel().astype(np.float64), np.inf)
    bounds = np.column_stack([np.zeros(nx + 1), ub])
    c = np.zeros(nx + 1)
    c[-1] = -1.0
    with quiet():
        res = linprog(c, A_ub=A, b_ub=b, bounds=bounds, method="highs")
    if res.status != 0 or res.x is None:  # never seen; fall back to a feasible allocation
        warnings.warn(f"gavel: the max-min LP failed ({res.message}); using the isolated allocation",
                      RuntimeWarning, stacklevel=2)
        X = isolated_allocation(feasible, scale, capacity)
        return X, float((a * X).sum(axis=1).min() * k)
    x = res.x
    z = float(x[-1])
    if efficient and z > 0:
        bounds[-1, 0] = z * (1.0 - 1e-7)
        c2 = np.append(-a.ravel(), 0.0)
        with quiet():
            res2 = linprog(c2, A_ub=A, b_ub=b, bounds=bounds, method="highs")
        if res2.status == 0 and res2.x is not None:
            x = res2.x
    X = np.clip(x[:nx].reshape(M, T), 0.0, 1.0)
    return np.where(feasible, X, 0.0), z * k


def all_at_best(a: np.ndarray, scale: np.ndarray, capacity: np.ndarray, feasible: np.ndarray) -> np.ndarray | None:
    """The allocation that runs every job all the time on a type where its ``a_mj`` is largest,
    if the GPUs allow it (``None`` otherwise). Then every job has its individual maximum, so it
    is optimal for every objective here, and the LP can be skipped (an uncontended cluster).
    Jobs with a single best type go there; the others (ties, as in the agnostic LAS), largest
    first, to the tied type with the most GPUs left."""
    M, T = a.shape
    if scale.sum() > capacity.sum():
        return None
    ok = feasible & (a >= a.max(axis=1, keepdims=True) * (1.0 - 1e-12))
    single = ok.sum(axis=1) == 1
    first = ok.argmax(axis=1)
    left = capacity - np.bincount(first[single], weights=scale[single], minlength=T)
    if (left < -1e-9).any():
        return None
    X = np.zeros((M, T))
    X[single, first[single]] = 1.0
    tied = np.flatnonzero(~single)
    for m in tied[np.argsort(-scale[tied], kind="stable")]:
        room = ok[m] & (left >= scale[m] - 1e-9)
        if not room.any():
            return None
        j = int(np.argmax(np.where(room, left, -np.inf)))
        left[j] -= scale[m]
        X[m, j] = 1.0
    return X


def proportional_allocation(feasible: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Gavel's X_prop: every job N_j / M of each type, rows scaled to a largest row sum of 1 (that
    is N_j / N; types a job cannot use give it nothing)."""
    capacity = np.asarray(capacity, dtype=np.float64)
    return np.where(feasible, capacity / capacity.sum(), 0.0)


def isolated_allocation(feasible: np.ndarray, scale: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Gavel's X_iso: an equal 1/M split of each type among the M jobs, divided by s_m, each row
    normalised to a sum of at most 1."""
    M = feasible.shape[0]
    x = np.where(feasible, np.asarray(capacity, dtype=np.float64)[None, :] / (max(M, 1) * np.asarray(scale)[:, None]), 0.0)
    return x / np.maximum(x.sum(axis=1, keepdims=True), 1.0)


def las_allocation(thr: np.ndarray, scale: np.ndarray, capacity: np.ndarray, *,
                   efficient: bool = True) -> tuple[np.ndarray, float]:
    """Max-min fairness over ``s_m thr(m, X) / thr(m, X_prop)`` (Gavel's LAS). Returns ``(X, z)``."""
    feasible = thr > 0
    thr_prop = (thr * proportional_allocation(feasible, capacity)).sum(axis=1)
    coef = np.asarray(scale, dtype=np.float64) / np.maximum(thr_prop, 1e-300)
    return max_min(thr * coef[:, None], scale, capacity, feasible, efficient=efficient)


def makespan_allocation(thr: np.ndarray, scale: np.ndarray, capacity: np.ndarray, remaining: np.ndarray, *,
                        efficient: bool = True) -> tuple[np.ndarray, float]:
    """Minimise ``max_m R_m / thr(m, X)``. Returns ``(X, makespan)``."""
    coef = 1.0 / np.maximum(np.asarray(remaining, dtype=np.float64), _MIN_REMAINING)
    X, z = max_min(thr * coef[:, None], scale, capacity, thr > 0, efficient=efficient)
    return X, (1.0 / z if z > 0 else math.inf)


def ftf_rho(thr_eff: np.ndarray, remaining: np.ndarray, elapsed: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Gavel's rho(m, X) = (t_m + R_m / thr(m, X)) / D_m for effective throughputs ``thr_eff``."""
    with np.errstate(divide="ignore"):
        return (elapsed + remaining / thr_eff) / denominator


def ftf_allocation(thr: np.ndarray, scale: np.ndarray, capacity: np.ndarray, remaining: np.ndarray,
                   elapsed: np.ndarray, iso_time: np.ndarray, *, tol: float = _FTF_TOL,
                   efficient: bool = True) -> tuple[np.ndarray, float]:
    """Minimise ``max_m rho(m, X)`` (Gavel's finish-time fairness) by bisection on rho; each step
    is the LP ``maximise lambda s.t. thr(m, X) >= lambda R_m / (rho D_m - t_m)``, feasible for
    rho iff lambda >= 1. ``iso_time`` is t_iso_m. Returns ``(X, max rho)``."""
    feasible = thr > 0
    R = np.maximum(np.asarray(remaining, dtype=np.float64), _MIN_REMAINING)
    t = np.asarray(elapsed, dtype=np.float64)
    x_iso = isolated_allocation(feasible, scale, capacity)
    thr_iso = (thr * x_iso).sum(axis=1)
    D = np.asarray(iso_time, dtype=np.float64) + R / thr_iso
    x_best = all_at_best(thr, np.asarray(scale, dtype=np.float64), np.asarray(capacity, dtype=np.float64), feasible)
    if x_best is not None:  # every job at its fastest: each rho is as low as it can be
        return x_best, float(ftf_rho(thr.max(axis=1), R, t, D).max())
    lo = float(ftf_rho(thr.max(axis=1), R, t, D).max())  # the worst job alone on its best type
    best_x = x_iso
    hi = float(ftf_rho(thr_iso, R, t, D).max())
    while hi > lo * (1.0 + tol):
        mid = math.sqrt(lo * hi)
        need = R / (mid * D - t)  # > 0 since mid > lo >= t / D
        X, lam = max_min(thr / need[:, None], scale, capacity, feasible, efficient=False)
        got = float(ftf_rho((thr * X).sum(axis=1), R, t, D).max())
        if got < hi:
            hi, best_x = got, X
        if lam < 1.0 - 1e-9:
            lo = mid
    if efficient:
        need = R / (hi * D - t)
        X, lam = max_min(thr / need[:, None], scale, capacity, feasible, efficient=True)
        got = float(ftf_rho((thr * X).sum(axis=1), R, t, D).max())
        if got <= hi * (1.0 + 1e-6):
            best_x = X
    return best_x, float(ftf_rho((thr * best_x).sum(axis=1), R, t, D).max())


class Gavel(Baseline):
    """Heterogeneity-aware max-min fairness (LAS), finish-time fairness or makespan as LPs,
    realised in 360 s rounds."""

    name = "gavel"
    needs_durations = False
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "last_clock": (np.float64, np.nan),  # clock at the previous decision
        "last_reset": (np.float64, 0.0),  # time of the last counter reset
        "last_solve": (np.float64, -np.inf),  # time of the last LP solve
        "n_lp": (np.int64, 0),  # jobs in the last LP
    }

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        objective: str = "las"
        """``"las"`` (max-min fairness), ``"ftf"`` (finish-time fairness) or ``"makespan"``"""
        heterogeneity_aware: bool = True
        """use each job's throughput per GPU type (``False``: every throughput 1)"""
        round_length: float = 360.0
        """round length, seconds (Gavel's time_per_iteration)"""
        reset_interval: float = 1920.0
        """minimum time between resets of the time-received counters, seconds (Gavel's)"""
        work_conserving: bool = True
        """fill GPUs the rounds leave idle with other runnable jobs"""

        def __post_init__(self) -> None:
            objective, heterogeneity_aware, work_conserving = self.objective, self.heterogeneity_aware, self.work_conserving
            round_length, reset_interval = self.round_length, self.reset_interval
            if objective not in OBJECTIVES:
                raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
            if not isinstance(heterogeneity_aware, bool | np.bool_):
                raise ValueError(f"heterogeneity_aware must be True or False, got {heterogeneity_aware!r}")
            if not isinstance(work_conserving, bool | np.bool_):
                raise ValueError(f"work_conserving must be True or False, got {work_conserving!r}")
            if not (isinstance(round_length, int | float) and math.isfinite(round_length) and round_length > 0):
                raise ValueError(f"round_length must be a finite number of seconds > 0, got {round_length!r}")
            if not (isinstance(reset_interval, int | float) and math.isfinite(reset_interval) and reset_interval >= 0):
                raise ValueError(f"reset_interval must be a finite number of seconds >= 0, got {reset_interval!r}")
            self._set(heterogeneity_aware=bool(heterogeneity_aware), round_length=float(round_length),
                      reset_interval=float(reset_interval), work_conserving=bool(work_conserving))

    def _derive(self) -> None:
        self.needs_durations = self.objective != "las"
        self.solves = 0  # LPs (or bisections) solved, for diagnostics

    # ------------------------------------------------------------------ state
    def reset(self, view: ClusterView) -> None:
        T = len(view.capacity)
        self.T = T
        per_type = np.dtype((np.float64, (T,)))  # a (E, J, T) field of the JobTable
        fields: dict[str, tuple[object, object]] = {
            "in_lp": (bool, False),  # included in the last solve of its env
            "x": (per_type, 0.0),  # X_mk from the last solve
            "xt": (np.float64, 0.0),  # when that X was set
            "xint": (per_type, 0.0),  # integral of X_mk dt up to xt (time it should have had)
            "got": (per_type, 0.0),  # wall seconds run on each type (all time)
            "got0": (per_type, 0.0),  # got at the last counter reset, less half a round
        }
        if self.objective == "ftf":
            fields.update({"iso_t": (np.float64, 0.0), "iso_done": (np.float64, 0.0), "iso_thr": (np.float64, 0.0)})
        self.job_fields = fields
        super().reset(view)
        speed = np.asarray(view.speed, dtype=np.float64)
        mean_speed = np.exp(np.log(np.maximum(speed, 1e-12)).mean(axis=0))  # (T,) geometric mean
        self.type_order = np.argsort(-mean_speed, kind="stable")  # fastest on average first
        self.reference_type = int(self.type_order[0])
        self.solves = 0

    def _index(self, view: ClusterView) -> tuple[np.ndarray, np.ndarray]:
        """Fancy index of each slot's job into the JobTable arrays."""
        self.jobs.ensure(view)
        job = view.job
        return rows(job.shape[0]), np.maximum(job, 0)

    def _set(self, view: ClusterView, mask: np.ndarray, values: dict[str, np.ndarray | float]) -> None:
        """Set fields (``(E, S)`` or ``(E, S, T)`` values, or scalars) of the jobs in ``mask``."""
        e, s = np.nonzero(mask & (view.job >= 0))
        if len(e) == 0:
            return
        j = view.job[e, s]
        for name, v in values.items():
            v = np.asarray(v)
            self.jobs.data[name][e, j] = v if v.ndim == 0 else v[e, s]

    def _account(self, view: ClusterView, active: np.ndarray) -> None:
        """Wall time run on each type since the previous decision; counters of new jobs."""
        jt = self.jobs
        idx = self._index(view)
        clock = view.clock
        last = self.envs["last_clock"]
        dt = np.where(np.isnan(last), 0.0, clock - last)
        self.envs["last_clock"] = clock.copy()
        new = active & ~jt["seen"][idx]
        if new.any():
            self._set(view, new, {"seen": True, "got0": -self.round_length / 2.0,
                                  "xt": np.broadcast_to(clock[:, None], new.shape)})
        run = view.running & active & (dt[:, None] > 0)
        if run.any():
            e, s = np.nonzero(run)
            jt["got"][e, view.job[e, s], view.gpu_type[e, s]] += dt[e]

    def deficits(self, view: ClusterView) -> np.ndarray:
        """``(E, S, T)`` time each job should have run on each type under X minus what it ran."""
        idx = self._index(view)
        jt = self.jobs
        since = (view.clock[:, None] - jt["xt"][idx])[:, :, None]
        return jt["xint"][idx] + jt["x"][idx] * since - jt["got"][idx]

    # ------------------------------------------------------------------ throughputs
    def throughputs(self, view: ClusterView) -> np.ndarray:
        """``(E, S, T)`` the throughput matrix the policy's programs use for each slot's job on
        its requested GPUs of each type (0 where the type has fewer GPUs than it requests)."""
        gpus = view.gpus
        feasible = gpus[:, :, None] <= view.capacity[None, None, :]
        if self.heterogeneity_aware:
            thr = np.stack([view.rate_at(gpus, k) for k in range(self.T)], axis=2)
        elif self.objective == "las":
            thr = np.ones(feasible.shape)
        else:
            ref = view.rate_at(gpus, self.reference_type)
            thr = np.repeat(ref[:, :, None], self.T, axis=2)
        return np.where(feasible, thr, 0.0)

    def _solve(self, view: ClusterView, envs: np.ndarray, active: np.ndarray) -> None:
        """Recompute X for the envs in the mask ``envs`` (one program per env)."""
        jt = self.jobs
        idx = self._index(view)
        thr = self.throughputs(view)
        E, S, T = thr.shape
        X = np.zeros((E, S, T))
        cap = np.asarray(view.capacity, dtype=np.float64)
        clock = view.clock
        if self.objective != "las":
            remaining = view.remaining
        if self.objective == "ftf":
            progress = view.progress
            iso_t, iso_done, iso_thr = (jt[name][idx] for name in ("iso_t", "iso_done", "iso_thr"))
            # t_iso accrues the work done since the last solve at the then isolated throughput
            iso_t = np.where(iso_thr > 0, iso_t + (progress - iso_done) / np.where(iso_thr > 0, iso_thr, 1.0), iso_t)
            new_iso_thr = np.zeros((E, S))
        for e in np.flatnonzero(envs):
            s = np.flatnonzero(active[e])
            if len(s) == 0:
                continue
            th = thr[e, s]
            scale = view.gpus[e, s].astype(np.float64)
            if self.objective == "las":
                x, _ = las_allocation(th, scale, cap)
            elif self.objective == "makespan":
                x, _ = makespan_allocation(th, scale, cap, remaining[e, s])
            else:
                x, _ = ftf_allocation(th, scale, cap, remaining[e, s], clock[e] - view.submit[e, s], iso_t[e, s])
                new_iso_thr[e, s] = (th * isolated_allocation(th > 0, scale, cap)).sum(axis=1)
            X[e, s] = x
            self.solves += 1
        # the time each job should have had under the old X is banked before X changes
        xint = jt["xint"][idx] + jt["x"][idx] * (clock[:, None] - jt["xt"][idx])[:, :, None]
        upd = {"x": X, "xint": xint, "xt": np.broadcast_to(clock[:, None], (E, S)), "in_lp": True}
        if self.objective == "ftf":
            upd.update({"iso_t": iso_t, "iso_done": progress, "iso_thr": new_iso_thr})
        self._set(view, envs[:, None] & active, upd)
        self.envs["last_solve"] = np.where(envs, clock, self.envs["last_solve"])
        self.envs["n_lp"] = np.where(envs, active.sum(axis=1), self.envs["n_lp"])

    # ------------------------------------------------------------------ decision
    def plan(self, view: ClusterView) -> Allocation | None:
        active = view.status != EMPTY
        self._account(view, active)
        jt = self.jobs
        T = self.T
        gpus = view.gpus
        cap_t = np.asarray(view.capacity)
        feasible = (gpus[:, :, None] <= cap_t[None, None, :]) & active[:, :, None]
        waiting = view.waiting
        rnd = np.asarray(view.at_round_boundary, dtype=bool) & active.any(axis=1)
        if not rnd.any():
            if not self.work_conserving:
                return None
            free = view.free_per_type()
            fits = waiting & (feasible & (gpus[:, :, None] <= free[:, None, :])).any(axis=2)
            if not fits.any():
                return None
        clock = view.clock
        idx = self._index(view)
        if rnd.any():
            due = rnd & (clock - self.envs["last_reset"] >= self.reset_interval)
            if due.any():  # Gavel's counter reset: every job starts again from half a round
                self._set(view, due[:, None] & active, {"got0": jt["got"][idx] - self.round_length / 2.0})
                self.envs["last_reset"] = np.where(due, clock, self.envs["last_reset"])
            dirty = (active & ~jt["in_lp"][idx]).any(axis=1) | (active.sum(axis=1) != self.envs["n_lp"])
            if self.objective != "las":
                dirty |= clock - self.envs["last_solve"] >= self.reset_interval
            solve = rnd & dirty
            if solve.any():
                self._solve(view, solve, active)

        x = jt["x"][idx]
        recv = jt["got"][idx] - jt["got0"][idx]  # >= half a round
        deficit = self.deficits(view)
        prio = x / recv
        E, S = gpus.shape
        # candidates: every active job in envs at a round boundary, waiting ones elsewhere
        cand = np.where(rnd[:, None], active, waiting if self.work_conserving else np.zeros_like(active))
        cap = np.where(rnd[:, None], cap_t[None, :], view.free_per_type()).astype(np.int64)
        if self.heterogeneity_aware:
            order_types = np.broadcast_to(self.type_order, (E, T))
        else:  # rotate the type order by one each round (Gavel shuffles it)
            r = np.floor(clock / self.round_length).astype(np.int64)
            order_types = self.type_order[(np.arange(T)[None, :] + r[:, None]) % T]
        sched = np.zeros((E, S), dtype=bool)
        new_t = view.gpu_type.copy()
        rws = rows(E)
        sl = np.arange(S)[None, :]
        job = view.job
        for i in range(T):
            k = order_types[:, i]  # (E,) the type each env serves now
            kk = k[:, None]
            c = cand & ~sched & feasible[rws, sl, kk]
            if not c.any():
                continue
            keys = (job, -x[rws, sl, kk], -deficit[rws, sl, kk], -prio[rws, sl, kk], ~c)
            order = np.lexsort(keys, axis=1)
            took = take_in_order(order, gpus, c, cap[np.arange(E), k])
            sched |= took
            new_t = np.where(took, kk, new_t)
        keep = view.running & ~rnd[:, None]
        n = np.where(sched, gpus, np.where(keep, view.allocated, 0))
        t = np.where(sched, new_t, view.gpu_type)
        return Allocation(n, t)


class GavelAgnostic(Gavel):
    """Gavel's heterogeneity-agnostic LAS (every throughput 1: equal GPU-time shares)."""

    name = "gavel_agnostic"

    @dataclass(frozen=True)
    class Knobs(Gavel.Knobs):
        heterogeneity_aware: bool = False
        """every throughput 1: equal GPU-time shares"""


class GavelFTF(Gavel):
    """Gavel's heterogeneity-aware finish-time fairness (its formulation of Themis)."""

    name = "gavel_ftf"
    needs_durations = True

    @dataclass(frozen=True)
    class Knobs(Gavel.Knobs):
        objective: str = "ftf"
        """finish-time fairness (min max rho)"""


class GavelMakespan(Gavel):
    """Gavel's heterogeneity-aware makespan minimisation."""

    name = "gavel_makespan"
    needs_durations = True

    @dataclass(frozen=True)
    class Knobs(Gavel.Knobs):
        objective: str = "makespan"
        """makespan (max min throughput / remaining work)"""
