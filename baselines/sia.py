"""Sia (Jayaram Subramanya et al., SOSP'23): heterogeneity-aware goodput optimisation over (GPU
type, GPU count) configurations, one integer program per scheduling round.

Paper: "Sia: Heterogeneity-aware, goodput-optimized ML-cluster scheduling", SOSP'23; formulation,
defaults and the artifact's behaviour as summarised in ``../shared/papers/modern.md`` section 2
(siasosp23/artifacts ``sia-simulator/sia.py``, ``cluster.py``).

Models:

- Configurations (Sia's config set): for a GPU type whose largest nodes hold R GPUs (N such
  nodes), single-node configs of 1, 2, 4, ... GPUs (powers of two below R) and R, then whole
  nodes 2R, 3R, ..., N R. A job may take a config of its bounds ``[min_gpus, cap]`` where
  ``cap = min(max_gpus, max(growth x the largest count it has run at, 1))``: Pollux's and Sia's
  2x growth cap. The largest count is recorded once the job runs past its restart; with
  ``share_cap`` (default) it is the largest over all GPU types, as in the artifact's experiment
  script (``--project_throughput --share_max_replicas``: throughputs projected across types,
  the bootstrapping the paper describes); ``share_cap=False`` keeps one per type (the
  artifact's class default), so a job moving to a type it never ran on starts there at 1 GPU.
  A rigid job (``min_gpus == max_gpus``) has one config per type, its fixed count (Sia's rigid
  jobs choose only the GPU type). A running job may always keep its current allocation (added
  as a config when it is not one already), and an elastic job none of whose counts is a config
  (say bounds [5, 7] on 4-GPU nodes) gets its minimum as one.
- Goodput matrix G (jobs x configs): the job's progress rate on that config, ``view.rate_at(n,
  type, nodes=n // R or 1, adaptive=True)``: for goodput jobs (:mod:`envs.goodput`) Pollux's
  goodput at the goodput-optimal batch size in the job's current efficiency phase, for plain jobs
  their speed-model rate. Each row is divided by its smallest positive valid entry (over every
  type), so the worst valid config has goodput 1, then multiplied by the smallest valid GPU
  count (1 for goodput jobs; a rigid job's slowest type is worth its GPU count, as the artifact
  scales rigid rows).
- Restart factor (Sia Eq. 2, the artifact's Pollux-style factor): for a job holding GPUs,
  ``r = max(T - N S, 0) / (T + S)`` with T its age (now - submit), N its restarts so far and S
  its restart cost (``view.restart_cost``, the core's per-job cost, e.g.
  :data:`envs.goodput.SIA_RESTART`); ``r = 1`` while ``T < S``. Every config but the held one is
  multiplied by r. Jobs holding nothing are not penalised (the artifact's ``prev_alloc`` is None).
- Fairness power: ``G' = round((r G) ** p, 2)`` clipped at 3000 (p = -0.5: a zero goodput costs
  3000, i.e. it is never chosen).
- Integer program per env, binary x_ic: with p < 0 minimise ``sum x G' + lambda_n (#jobs -
  sum x)`` (each placed job costs G' <= 1, each unplaced one lambda_n = 1.1: placing a job on
  its worst config saves lambda_n - 1 = 0.1, growing a job from G = 1 to G = 4 saves 0.5, and the
  program weighs the two); with p > 0 maximise ``sum x G' - lambda_n (#jobs - sum x)`` (the
  artifact adds ``lambda_n (#jobs - sum x)`` in both cases and expects a negative lambda_n with
  p > 0; here lambda_n is always the penalty, > 0). Constraints: at most one config per job;
  per GPU type, GPUs used <= GPUs of that type; a job inside a checkpoint-restore keeps its
  config (x = 1, hard). Solved with HiGHS (:func:`scipy.optimize.milp`, relative gap
  ``mip_rel_gap`` = 1e-4 on the objective without its constant lambda_n #jobs, so a little
  tighter than the artifact's, ``time_limit``); should the solver return nothing, the env keeps
  its allocation (counted in ``solve_failures``). Variables are ordered by workload position,
  so the solution does not depend on slot order.
  Configs that cannot improve the optimum are dropped before solving (one costing no less than
  leaving the job out, or than a config of the same job and type with at most as many GPUs),
  and when every job's cheapest config fits at once that is the answer, without the solver.
- Decisions at round boundaries (``round_length`` = 60 s), and immediately when jobs wait on an
  env where nothing runs; otherwise the allocation is kept (GPUs freed mid-round stay idle until
  the next round, as in Sia's round-based simulator). Goodput jobs run at their goodput-optimal
  batch size (``Allocation(adaptive=True)``: Sia tunes batch sizes like Pollux).
- Placement: the core's consolidate-first placer; jobs whose count and type are unchanged keep
  their nodes (no restart). Multi-node configs are whole multiples of the node size, so on a
  cluster with uniform nodes per type they take whole nodes whenever whole nodes are free.

Simplifies:

- Oracle goodput: the simulator's exact rate table instead of Sia's bootstrapped per-type
  throughput models (1-GPU profiles on arrival, projection from another type, fitting after the
  first multi-GPU run). So a never-run job already knows how each type suits it, where the
  artifact values every type's 1-GPU config at 1 before the first run.
- Restart costs are the core's (the simulated ones); the artifact's policy uses its own, slightly
  different, table.
- No eviction-and-retry placement (Sia's rule c): when fragmentation prevents a single-node
  config from fitting on one node, the consolidate-first placer spreads it (the job then pays the
  simulator's multi-node rate). The artifact's simulator also ignores placement.
- Sia's "strong-scaling" category (fixed batch, GPU count chosen) is not separate: plain elastic
  jobs behave like it, goodput jobs are adaptive.
- One integer program per env that decides, in a Python loop over those envs (the goodput matrix,
  caps and restart factors are computed for all envs at once).
- In the Gymnasium env (:func:`baselines.act`) the env starts jobs at their requested size on a
  type of its own choosing; only the set of jobs Sia places carries over.

Knobs: ``p=-0.5`` (fairness power; != 0), ``lambda_n=1.1`` (unplaced-job penalty, > 0),
``round_length=60`` s, ``growth=2`` (growth cap factor, >= 1), ``share_cap=True``,
``adaptive_batch=True`` (goodput jobs at their goodput-optimal batch size), ``time_limit=10`` s
and ``mip_rel_gap=1e-4`` (HiGHS).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from baselines.base import Baseline, BaselineKnobs, settled
from baselines.solver_output import quiet
from envs.policy import Allocation, ClusterView

#: Largest fairness-powered goodput (the artifact's ``sia_goodput_clip_val``).
CLIP = 3000.0

__all__ = ["Sia", "config_table", "solve_configs"]


def config_table(node_type: np.ndarray, node_capacity: np.ndarray, num_types: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sia's configurations of a cluster: ``(type, count, nodes)`` arrays, one entry per config.

    Per type: R = its largest node size, N = the number of nodes of that size; counts 1, 2, 4, ...
    (powers of two below R), R, then 2R, ..., N R (``nodes`` = count // R, or 1 within a node).
    """
    ts, ns, ks = [], [], []
    for t in range(num_types):
        caps = node_capacity[node_type == t]
        R = int(caps.max())
        N = int((caps == R).sum())
        single = [1 << i for i in range(R.bit_length()) if (1 << i) < R] + [R]
        for n in single:
            ts.append(t)
            ns.append(n)
            ks.append(1)
        for k in range(2, N + 1):
            ts.append(t)
            ns.append(k * R)
            ks.append(k)
    return np.array(ts, dtype=np.int64), np.array(ns, dtype=np.int64), np.array(ks, dtype=np.int64)


def _undominated(job: np.ndarray, gpu_type: np.ndarray, gpus: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Mask of the candidate (job, config) pairs worth giving the solver: a config that costs
    no less than leaving the job unplaced (cost >= 0), or no less than a config of the same job
    and GPU type with at most as many GPUs, never improves a solution (swapping it for the
    other keeps every constraint), so dropping it keeps the optimum exact."""
    keep = np.zeros(len(job), dtype=bool)
    if len(job) == 0:
        return keep
    order = np.lexsort((cost, gpus, gpu_type, job))
    jo, to, co = job[order], gpu_type[order], cost[order]
    start = np.ones(len(order), dtype=bool)
    start[1:] = (jo[1:] != jo[:-1]) | (to[1:] != to[:-1])
    group = np.cumsum(start)
    # running minimum restarted at each (job, type) group: later groups are shifted below earlier ones
    shifted = co - group * (4.0 * CLIP + 1e3)
    best_before = np.minimum.accumulate(shifted)
    prev = np.concatenate([[np.inf], best_before[:-1]])
    keep[order] = (start | (shifted < prev)) & (co < 0)
    return keep


def solve_configs(score: np.ndarray, valid: np.ndarray, gpus: np.ndarray, gpu_type: np.ndarray,
                  capacity: np.ndarray, *, lambda_n: float, maximize: bool = False,
                  fixed: np.ndarray | None = None, time_limit: float = 10.0,
                  mip_rel_gap: float = 1e-4, memo: SolveMemo | None = None) -> np.ndarray | None:
    """Sia's integer program for one cluster: pick at most one config per job.

    ``score`` ``(J, C)``: the fairness-powered goodput G' of job j on config c; ``valid``
    ``(J, C)``: which configs job j may take; ``gpus`` ``(J, C)``: GPUs config c gives job j;
    ``gpu_type`` ``(C,)``: the config's GPU type; ``capacity`` ``(T,)``: GPUs per type;
    ``fixed`` ``(J,)``: a config the job must keep (-1: free). Minimises ``sum x G' + lambda_n
    (J - sum x)`` (``maximize``: maximises ``sum x G' - lambda_n (J - sum x)``) subject to one
    config per job and per-type capacity. Returns the chosen config per job (-1: none), or
    ``None`` if the solver found no feasible solution in its time limit. ``memo`` answers a
    program identical to one solved before (same costs, matrix and bounds, byte for byte) without
    the solver: rounds often pose the same program again while nothing but time has changed.
    """
    J = valid.shape[0]
    chosen = np.full(J, -1, dtype=np.int64)
    if fixed is not None:
        fixed = np.asarray(fixed, dtype=np.int64)
        has = fixed >= 0
        valid = valid.copy()
        valid[has] = False
        valid[np.flatnonzero(has), fixed[has]] = True
    j, c = np.nonzero(valid)
    s = score[j, c]
    cost = -(s + lambda_n) if maximize else s - lambda_n
    g = gpus[j, c]
    keep = _undominated(j, gpu_type[c], g, cost)
    if fixed is not None:
        keep |= fixed[j] == c
    j, c, cost = j[keep], c[keep], cost[keep]
    if len(j) == 0:
        return chosen
    T = len(capacity)
    # if every job's cheapest config fits together, that is the optimum (no solver needed)
    order = np.lexsort((c, cost, j))
    first = np.ones(len(order), dtype=bool)
    first[1:] = j[order][1:] != j[order][:-1]
    best = order[first]
    used = np.bincount(gpu_type[c[best]], weights=gpus[j[best], c[best]], minlength=T)
    if (used <= np.asarray(capacity)).all():
        chosen[j[best]] = c[best]
        return chosen
    lb = np.zeros(len(j))
    if fixed is not None:
        lb[fixed[j] == c] = 1.0
    rows = np.concatenate([j, J + gpu_type[c]])
    cols = np.concatenate([np.arange(len(j)), np.arange(len(j))])
    vals = np.concatenate([np.ones(len(j)), gpus[j, c].astype(np.float64)])
    A = csr_matrix((vals, (rows, cols)), shape=(J + T, len(j)))
    upper = np.concatenate([np.ones(J), np.asarray(capacity, dtype=np.float64)])
    key = None
    if memo is not None:
        key = memo.key(j, c, cost, rows, vals, lb, upper, J, time_limit, mip_rel_gap)
        if key in memo:
            on = memo.get(key)
            if on is None:
                return None
            chosen[j[on]] = c[on]
            return chosen
    with quiet():
        res = milp(cost, integrality=np.ones(len(j)), bounds=Bounds(lb, np.ones(len(j))),
                   constraints=LinearConstraint(A, -np.inf, upper),
                   options={"time_limit": float(time_limit), "mip_rel_gap": float(mip_rel_gap), "disp": False})
    on = None if res.x is None else res.x > 0.5
    if memo is not None:
        memo.put(key, on)
    if on is None:
        return None
    chosen[j[on]] = c[on]
    return chosen


class SolveMemo:
    """Solutions of :func:`solve_configs`' integer programs by their exact bytes, the
    ``size`` most recent kept (least recently used dropped first)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._store: OrderedDict[bytes, np.ndarray | None] = OrderedDict()

    @staticmethod
    def key(*parts: object) -> bytes:
        h = hashlib.blake2b(digest_size=20)
        for p in parts:
            a = np.asarray(p)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.digest()

    def __contains__(self, key: bytes) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: bytes) -> np.ndarray | None:
        self._store.move_to_end(key)
        return self._store[key]

    def put(self, key: bytes, on: np.ndarray | None) -> None:
        self._store[key] = on
        if len(self._store) > self.size:
            self._store.popitem(last=False)


class Sia(Baseline):
    """Heterogeneity-aware goodput ILP over (GPU type, count) configurations, 60 s rounds."""

    name = "sia"

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        p: float = -0.5
        """fairness power of the goodput objective (finite, != 0)"""
        lambda_n: float = 1.1
        """penalty of leaving a job unplaced (> 0)"""
        round_length: float = 60.0
        """re-allocation period, seconds"""
        growth: float = 2.0
        """growth cap factor: at most ``growth`` x the largest count a job has run at (>= 1)"""
        share_cap: bool = True
        """the growth cap uses the largest count run at over all GPU types (``False``: per type)"""
        adaptive_batch: bool = True
        """run goodput jobs at their goodput-optimal batch size"""
        time_limit: float = 10.0
        """HiGHS time limit per solve, seconds"""
        mip_rel_gap: float = 1e-4
        """HiGHS relative MIP gap, in [0, 1)"""

        def __post_init__(self) -> None:
            p, lambda_n, round_length, growth = self.p, self.lambda_n, self.round_length, self.growth
            time_limit, mip_rel_gap = self.time_limit, self.mip_rel_gap
            if not (np.isfinite(p) and p != 0):
                raise ValueError(f"p must be a finite non-zero number (Sia's fairness power), got {p}")
            if not (np.isfinite(lambda_n) and lambda_n > 0):
                raise ValueError(f"lambda_n must be a finite number > 0 (unplaced-job penalty), got {lambda_n}")
            if not (np.isfinite(round_length) and round_length > 0):
                raise ValueError(f"round_length must be > 0 seconds, got {round_length}")
            if not (np.isfinite(growth) and growth >= 1):
                raise ValueError(f"growth must be >= 1 (cap = growth x largest count run at), got {growth}")
            if not time_limit > 0:
                raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
            if not 0 <= mip_rel_gap < 1:
                raise ValueError(f"mip_rel_gap must be in [0, 1), got {mip_rel_gap}")
            self._set(p=float(p), lambda_n=float(lambda_n), round_length=float(round_length), growth=float(growth),
                      share_cap=bool(self.share_cap), adaptive_batch=bool(self.adaptive_batch),
                      time_limit=float(time_limit), mip_rel_gap=float(mip_rel_gap))

    def _derive(self) -> None:
        self.solve_failures = 0
        self.memo = SolveMemo()

    def reset(self, view: ClusterView) -> None:
        T = len(view.capacity)
        # largest GPU count each job has run at (past its restart), per GPU type
        self.job_fields = {f"ran{k}": (np.int64, 0) for k in range(T)}
        super().reset(view)
        self.cfg_t, self.cfg_n, self.cfg_nodes = config_table(np.asarray(view.node_type), np.asarray(view.node_capacity), T)
        self.max_n = int(self.cfg_n.max(initial=1))
        self.solve_failures = 0
        self.memo = SolveMemo()

    # ------------------------------------------------------------------ state
    def observe(self, view: ClusterView) -> np.ndarray:
        """Record the counts jobs run at; return ``(E, S, T)`` the largest count run at per type."""
        T = len(view.capacity)
        names = tuple(f"ran{k}" for k in range(T))
        ran = np.stack(self.jobs.gather_many(view, names), axis=-1)
        run = view.running & ~view.restarting
        if run.any():
            here = run[:, :, None] & (view.gpu_type[:, :, None] == np.arange(T))
            new = np.where(here, np.maximum(ran, view.allocated[:, :, None]), ran)
            changed = (new != ran).any(axis=2)
            if changed.any():
                self.jobs.scatter_many(view, changed, {name: new[:, :, k] for k, name in enumerate(names)})
                ran = new
        return ran

    def caps(self, view: ClusterView, ran: np.ndarray) -> np.ndarray:
        """``(E, S, T)`` the largest GPU count each job may take on each type (the growth cap)."""
        if self.share_cap:
            ran = np.broadcast_to(ran.max(axis=2, keepdims=True), ran.shape)
        cap = np.maximum(np.floor(self.growth * ran).astype(np.int64), 1)
        cap = np.minimum(cap, view.max_gpus[:, :, None])
        return np.maximum(cap, view.min_gpus[:, :, None])

    # ------------------------------------------------------------------ goodput matrix
    def matrix(self, view: ClusterView, ran: np.ndarray) -> tuple[np.ndarray, ...]:
        """The program's inputs for every env: ``score`` (G' after normalisation, restart factor
        and power), ``valid``, ``gpus`` (all ``(E, S, C)``), ``col_t`` ``(C,)`` and ``held``
        ``(E, S)`` (the config each running job holds, -1 for none). Columns: the standard
        configs up to the largest count any job may take, then one per-job column per type."""
        E, S = view.job.shape
        T = len(view.capacity)
        active = view.status != 0
        run = view.running
        rigid = view.min_gpus == view.max_gpus
        cap = self.caps(view, ran)  # (E, S, T)
        elastic = active & ~rigid
        top = int(np.where(elastic[:, :, None], cap, 0).max(initial=0))
        use = self.cfg_n <= top
        ct, cn, ck = self.cfg_t[use], self.cfg_n[use], self.cfg_nodes[use]
        Cs = len(ct)
        C = Cs + T
        col_t = np.concatenate([ct, np.arange(T)])
        cur_n, cur_t = view.allocated, view.gpu_type
        # standard configs
        cap_c = np.take(cap, ct, axis=2)  # (E, S, Cs)
        valid = np.zeros((E, S, C), dtype=bool)
        valid[:, :, :Cs] = elastic[:, :, None] & (cn >= view.min_gpus[:, :, None]) & (cn <= cap_c)
        is_cur = (run & ~rigid)[:, :, None] & (ct == cur_t[:, :, None]) & (cn == cur_n[:, :, None])  # (E, S, Cs)
        valid[:, :, :Cs] |= is_cur
        # per-job columns, one per type: rigid count, current allocation, or minimum
        types = np.arange(T)
        fits = view.capacity[None, None, :]
        own = np.where(rigid[:, :, None], view.min_gpus[:, :, None], 0)
        own_ok = active[:, :, None] & rigid[:, :, None] & (own <= fits)
        held_std = is_cur.any(axis=2)
        cur_own = run & ~rigid & ~held_std  # current allocation is not a standard config
        here = cur_own[:, :, None] & (cur_t[:, :, None] == types)
        own = np.where(here, cur_n[:, :, None], own)
        own_ok |= here
        none = elastic & ~valid[:, :, :Cs].any(axis=2)  # elastic with no standard config
        fallback = none[:, :, None] & ~here & (view.min_gpus[:, :, None] <= fits)
        own = np.where(fallback, view.min_gpus[:, :, None], own)
        own_ok |= fallback
        valid[:, :, Cs:] = own_ok
        gpus = np.concatenate([np.broadcast_to(cn, (E, S, Cs)), own], axis=2)
        held = np.where(held_std, np.argmax(is_cur, axis=2) if Cs else 0,
                        np.where(run & (rigid | cur_own), Cs + cur_t, -1))
        held = np.where(run & (held >= 0) & np.take_along_axis(valid, np.maximum(held, 0)[:, :, None], axis=2)[:, :, 0], held, -1)
        # goodput of every config
        rate = np.zeros((E, S, C))
        adaptive = self.adaptive_batch
        if Cs:  # every standard config in one call (rates of invalid ones are never read)
            rate[:, :, :Cs] = view.rate_at(cn[None, None, :], ct[None, None, :], nodes=ck[None, None, :],
                                           adaptive=adaptive)
        for k in range(T):
            c = Cs + k
            if valid[:, :, c].any():
                rate[:, :, c] = view.rate_at(np.maximum(own[:, :, k], 1), k, adaptive=adaptive)
        valid &= rate > 0
        lowest = np.where(valid, rate, np.inf).min(axis=2)
        unit = np.where(valid, gpus, np.iinfo(np.int64).max).min(axis=2)
        ok = np.isfinite(lowest)
        G = np.where(valid, rate / np.where(ok, lowest, 1.0)[:, :, None] * np.where(ok, unit, 1)[:, :, None], 0.0)
        # restart factor on every config but the held one
        age = view.clock[:, None] - view.submit
        cost = view.restart_cost
        r = np.maximum(age - view.restarts * cost, 0.0) / np.maximum(age + cost, 1e-12)
        r = np.where(age < cost, 1.0, r)
        r = np.where(held >= 0, r, 1.0)
        factor = np.where(np.arange(C)[None, None, :] == held[:, :, None], 1.0, r[:, :, None])
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            score = np.power(G * factor, self.p)
        score = np.minimum(np.round(np.nan_to_num(score, nan=CLIP, posinf=CLIP), 2), CLIP)
        return score, valid, gpus, col_t, held

    # ------------------------------------------------------------------ decisions
    def plan(self, view: ClusterView) -> Allocation | None:
        self.jobs.ensure(view)
        ran = self.observe(view)
        active = view.status != 0
        run = view.running
        waiting = view.waiting
        # on one GPU type, every job a running rigid gang: each has one config, placing it costs
        # less than lambda_n (G' <= 1), so the program keeps them all; the round is skipped
        quiet = settled(view) if len(view.capacity) == 1 else np.zeros(len(active), dtype=bool)
        need = np.asarray(view.at_round_boundary, dtype=bool) & active.any(axis=1) & ~quiet
        need |= waiting.any(axis=1) & ~run.any(axis=1)
        if not need.any():
            return None
        score, valid, gpus, col_t, held = self.matrix(view, ran)
        restarting = run & view.restarting & (held >= 0)
        fixed = np.where(restarting, held, -1)
        n = np.where(run, view.allocated, 0).astype(np.int64)
        t = view.gpu_type.astype(np.int64).copy()
        cap = np.asarray(view.capacity)
        for e in np.flatnonzero(need):
            slots = np.flatnonzero(active[e])
            slots = slots[np.argsort(view.job[e, slots], kind="stable")]
            chosen = solve_configs(score[e, slots], valid[e, slots], gpus[e, slots], col_t, cap,
                                   lambda_n=self.lambda_n, maximize=self.p > 0, fixed=fixed[e, slots],
                                   time_limit=self.time_limit, mip_rel_gap=self.mip_rel_gap, memo=self.memo)
            if chosen is None:
                self.solve_failures += 1
                continue
            on = chosen >= 0
            n[e, slots] = np.where(on, gpus[e, slots, np.maximum(chosen, 0)], 0)
            t[e, slots] = np.where(on, col_t[np.maximum(chosen, 0)], t[e, slots])
        goodput = view.kind >= 0
        adaptive = np.where(need[:, None] & goodput, self.adaptive_batch, view.adaptive)
        return Allocation(n, t, adaptive=adaptive)
