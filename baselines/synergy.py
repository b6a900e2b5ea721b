"""Synergy (Mohan et al., OSDI'22): resource-sensitive allocation of CPUs and memory beside GPUs.

Paper: "Looking Beyond GPUs for DNN Scheduling on Multi-Tenant Clusters", OSDI'22; rules and
defaults as summarised in ``../shared/papers/modern.md`` section 5 (msr-fiddle/synergy
``schedulers/las_synergy_new.py``, ``resources/cluster.py``, ``configs/default_cluster.ini``).

Models:

- GPU admission by a host policy, independent of CPUs (GPUs stay the gate): at every round
  boundary (``round_length`` = 300 s, the lease) all active jobs are ordered by ``order`` ("las":
  least attained GPU-service first, Synergy's default; "fifo": arrival) and admitted in that
  order while their gang fits in the GPUs of a type (jobs that do not fit are skipped); running
  jobs left out are preempted. Between rounds nothing is preempted and waiting jobs fill free
  GPUs in the same order. On a multi-type cluster a job keeps its type when it can, else takes
  the fastest type for its model with room (the core's greedy rule).
- CPU and memory per GPU for every admitted job (cores built with ``resources=True``), re-divided
  at every decision that admits jobs and at every round boundary (``mode``):

  - ``"proportional"``: the GPU-proportional baseline ("fair"): each GPU comes with its node's
    CPUs / GPUs and memory / GPUs (the core's default grant, asked as NaN).
  - ``"greedy"`` (Synergy-GREEDY): each job asks for its ideal demand; a job that fits nowhere
    at its ideal demand is skipped this round (its GPUs stay idle).
  - ``"tune"`` (Synergy-TUNE, the default): admitted jobs are served largest GPU demand first
    (ties in admission order). A job (1) gets its ideal demand on a server that has room for it;
    else (2) its GPU-proportional share there (``min(ideal, fair)`` in each dimension, so a job
    that needs less than its fair share never holds more); else (3) the server with enough free
    GPUs (fewest free first) takes CPU and memory back from jobs already placed on it that hold
    more than their fair share (``_reallocate_peer``'s order: fewest servers first, then most
    CPUs per GPU, then most memory per GPU; as few as cover the need), shrinking them to their
    fair share, and the job gets (2). What shrinking frees beyond the need stays idle until the
    next re-division, as in Synergy. Invariant (tested): no job ever holds less than its
    GPU-proportional share unless its ideal demand is below it.

  A job's ideal demand is Synergy's optimistic profile as the simulator carries it:
  ``traces.models.CPU_PROFILE[model][1]`` CPUs per GPU (the CPUs at which it reaches its best
  speed) and ``traces.models.MEM_PER_GPU[model]`` GB per GPU, capped at what a server holds
  per GPU of the job (Synergy caps demands larger than a server). The core turns what a job
  gets into speed by ``traces.models.cpu_factor`` relative to a GPU-proportional share.
- Placement (explicit, ``Allocation(place=...)``, so that the policy's CPU accounting is the
  core's): a job whose gang fits on one server goes to one server, the one with the fewest free
  GPUs among those with room at the level being tried (Synergy's consolidation); a larger gang
  is spread by the core's consolidate-first rule (fewest servers, emptiest first). Admitted jobs
  that were running keep their servers (the core charges a restart for a move; Synergy re-places
  every round at no cost): only their CPUs and memory are re-divided, in place; except that at
  a round boundary a gang left spread over several servers is placed afresh when one server
  could now hold it whole (:func:`reconsolidate`), rather than run at the spread-gang speed for
  the rest of its life.

Simplifies:

- Sensitivity is the simulator's exact per-model profile (Synergy profiles it optimistically);
  only the ideal point of the profile is used, as Synergy's GREEDY and TUNE do; Synergy-OPT (an
  LP upper bound) is not implemented.
- Rigid jobs at their requested GPU count; GPU admission is greedy with backfill (Synergy's
  round admits in order while GPUs remain).
- TUNE's fallback keeps a dimension whose ideal demand is below the fair share at its ideal
  (Synergy's ``_make_fair_share`` switches every dimension to the fair share once one exceeds
  it): the same speed, less memory held. Gangs larger than a server spread over the fewest
  servers (the core's rule; Synergy's placement variant fills the fullest servers first, its
  default variant takes any GPUs whose server has room), since the core slows a gang spread over
  more servers than it needs.
- Admitted jobs that were running keep their placement (see above; spread gangs that one server
  could now hold excepted), so TUNE chooses servers for newly started jobs only.
- Between rounds, CPUs freed by completions are re-divided only when a waiting job starts (the
  core also returns them to running jobs below their ask): Synergy re-divides at round
  boundaries.
- Without the resource model (``view.resources`` False, e.g. the default Gymnasium env) every
  mode is its host policy: a ``Priority`` over the same order, preempting at round boundaries.

Knobs: ``mode`` ("tune", "greedy" or "proportional"), ``order`` ("las" or "fifo"),
``round_length`` (300 s, Synergy's round). No duration knowledge. Registered names:
``synergy`` (TUNE), ``synergy_greedy`` (GREEDY) and ``synergy_proportional`` (the GPU-proportional
twin under the same GPU policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from baselines.base import (
    EMPTY,
    Baseline,
    BaselineKnobs,
    order_scores,
    serve_order,
)
from envs import placement
from envs.lowering import allocation
from envs.policy import Allocation, ClusterView, Priority
from traces import models

MODES = ("tune", "greedy", "proportional")
ORDERS = ("las", "fifo")
#: Synergy's ideal demand per GPU for each model (in :data:`traces.models.MODELS` order).
IDEAL_CPU = np.array([models.CPU_PROFILE[m][1] for m in models.MODELS], dtype=np.float64)
IDEAL_MEM = np.array([models.MEM_PER_GPU[m] for m in models.MODELS], dtype=np.float64)
_EPS = 1e-6
_BIG = np.iinfo(np.int64).max


def job_fair(place: np.ndarray, fair: np.ndarray) -> np.ndarray:
    """Per-GPU fair share of jobs placed ``place`` (``(..., N)``): the smallest ``fair`` (``(N,)``)
    over their nodes, as the core computes it (inf for a job placed nowhere)."""
    return np.where(place > 0, fair, np.inf).min(axis=-1)


def reconsolidate(view: ClusterView) -> np.ndarray:
    """``(E, S)``: running gangs spread over several servers that one server of their GPU type
    could now hold whole (its free GPUs plus the gang's own there). Synergy re-places every job
    every round; such a gang is re-placed at the round boundary rather than kept spread (and
    slowed by the spread-gang factor) for the rest of its run."""
    pl = view.placement
    spread = view.running & ((pl > 0).sum(axis=-1) > 1)
    room = view.free_per_node[:, None, :] + pl
    same = view.node_type[None, None, :] == view.gpu_type[:, :, None]
    return spread & ((room >= view.gpus[:, :, None]) & same).any(axis=-1)


def plan_resources(
    mode: str,
    order: np.ndarray,
    count: np.ndarray,
    kept: np.ndarray,
    gpus: np.ndarray,
    gpu_type: np.ndarray,
    model: np.ndarray,
    job: np.ndarray,
    place: np.ndarray,
    node_type: np.ndarray,
    node_cap: np.ndarray,
    node_cpu: np.ndarray,
    node_mem: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Place the admitted jobs and divide CPUs and memory among them (see the module docstring).

    ``order`` ``(E, S)``: slots in serving order, the first ``count[e]`` of row ``e`` being the
    admitted jobs; ``kept`` ``(E, S)``: admitted jobs that keep their current ``place``
    (``(E, S, N)``); ``gpus``, ``gpu_type`` (the admitted type), ``model``, ``job`` (workload
    position, for ties) ``(E, S)``; node arrays ``(N,)``. All CPUs and memory are re-divided; the
    kept jobs' GPUs are reserved from the start. Loops over serving ranks, vectorised over envs.

    Returns ``(place, cpus, mem, skipped)``: GPUs per node, CPUs and GB per GPU of every placed
    job (NaN elsewhere), and the jobs GREEDY skipped.
    """
    E, S = gpus.shape
    N = len(node_cap)
    fair_c = node_cpu / node_cap
    fair_m = node_mem / node_cap
    P = np.where(kept[:, :, None], place, 0).astype(np.int64)
    gfree = node_cap[None, :] - P.sum(axis=1)
    cfree = np.tile(node_cpu.astype(np.float64), (E, 1))
    mfree = np.tile(node_mem.astype(np.float64), (E, 1))
    pc = np.full((E, S), np.nan)
    pm = np.full((E, S), np.nan)
    jfc = np.full((E, S), np.inf)
    jfm = np.full((E, S), np.inf)
    done = np.zeros((E, S), dtype=bool)
    skipped = np.zeros((E, S), dtype=bool)
    nodes = np.arange(N)
    for r in range(int(count.max(initial=0))):
        e = np.flatnonzero(count > r)
        s = order[e, r]
        B = len(e)
        b = np.arange(B)
        g = gpus[e, s]
        t = gpu_type[e, s]
        m = model[e, s]
        kp = kept[e, s]
        typ = node_type[None, :] == t[:, None]
        gf = np.where(typ, gfree[e], 0)
        single = ~kp & (gf.max(axis=1) >= g)
        fixed = np.where(kp[:, None], P[e, s], 0)
        spread = ~kp & ~single
        if spread.any():
            fixed[spread] = placement.consolidate_first(gf[spread], node_type, t[spread], g[spread])
        fjc, fjm = job_fair(fixed, fair_c), job_fair(fixed, fair_m)
        # demand per GPU: on each candidate node (single-server jobs) and on a fixed placement
        if mode == "proportional":
            ic_n, im_n = np.broadcast_to(fair_c, (B, N)), np.broadcast_to(fair_m, (B, N))
            ic_f, im_f = fjc, fjm
        else:
            # the ideal demand, capped at what a server holds (Synergy caps demands at a server)
            ic_n = np.minimum(IDEAL_CPU[m][:, None], node_cpu[None, :] / g[:, None])
            im_n = np.minimum(IDEAL_MEM[m][:, None], node_mem[None, :] / g[:, None])
            ic_f = np.minimum(IDEAL_CPU[m], job_fair(fixed, node_cpu[None, :] / np.maximum(fixed, 1)))
            im_f = np.minimum(IDEAL_MEM[m], job_fair(fixed, node_mem[None, :] / np.maximum(fixed, 1)))
        fc_n, fm_n = np.minimum(ic_n, fair_c[None, :]), np.minimum(im_n, fair_m[None, :])
        fc_f, fm_f = np.minimum(ic_f, fjc), np.minimum(im_f, fjm)
        ce, me = cfree[e], mfree[e]
        room = typ & (gf >= g[:, None])

        def on_node(c, mm, ce=ce, me=me, room=room, g=g):
            return room & (ce + _EPS >= g[:, None] * c) & (me + _EPS >= g[:, None] * mm)

        def on_fixed(c, mm, ce=ce, me=me, fixed=fixed):
            on = fixed > 0
            need_c = np.where(on, fixed * np.where(np.isfinite(c), c, 0.0)[:, None], 0.0)
            need_m = np.where(on, fixed * np.where(np.isfinite(mm), mm, 0.0)[:, None], 0.0)
            return ((need_c <= ce + _EPS) & (need_m <= me + _EPS)).all(axis=1)

        ok1, ok2 = on_node(ic_n, im_n), on_node(fc_n, fm_n)
        n1 = np.where(ok1, gf, _BIG).argmin(axis=1)
        n2 = np.where(ok2, gf, _BIG).argmin(axis=1)
        n3 = np.where(room, gf, _BIG).argmin(axis=1)
        has1 = np.where(single, ok1.any(axis=1), on_fixed(ic_f, im_f))
        has2 = np.where(single, ok2.any(axis=1), on_fixed(fc_f, fm_f))
        node = np.where(has1, n1, np.where(has2, n2, n3))
        row = np.where(single[:, None], (nodes[None, :] == node[:, None]) * g[:, None], fixed)
        c = np.where(single, np.where(has1, ic_n[b, node], fc_n[b, node]), np.where(has1, ic_f, fc_f))
        mm = np.where(single, np.where(has1, im_n[b, node], fm_n[b, node]), np.where(has1, im_f, fm_f))
        skip = np.zeros(B, dtype=bool) if mode != "greedy" else ~has1
        shrink = ~has1 & ~has2 & ~skip
        if shrink.any():
            i = np.flatnonzero(shrink)
            _shrink(e[i], row[i], c[i], mm[i], P, pc, pm, jfc, jfm, done, job, cfree, mfree)
        if skip.any():
            es, ss = e[skip], s[skip]
            skipped[es, ss] = True
            gfree[es] += np.where(kp[skip][:, None], P[es, ss], 0)
            P[es, ss] = 0
        ok = ~skip
        eo, so, rw = e[ok], s[ok], row[ok]
        P[eo, so] = rw
        gfree[eo] -= np.where(kp[ok][:, None], 0, rw)
        cfree[eo] -= rw * c[ok][:, None]
        mfree[eo] -= rw * mm[ok][:, None]
        pc[eo, so], pm[eo, so] = c[ok], mm[ok]
        jfc[eo, so], jfm[eo, so] = job_fair(rw, fair_c), job_fair(rw, fair_m)
        done[eo, so] = True
    return P, pc, pm, skipped


def _shrink(e, row, c, mm, P, pc, pm, jfc, jfm, done, job, cfree, mfree) -> None:
    """TUNE's step (3) for jobs (one per env ``e``) that need ``row * (c, mm)`` on their nodes:
    shrink jobs already placed there that hold more than their fair share back to it, in
    Synergy's order (fewest servers first, then most CPUs per GPU, then most memory per GPU; ties
    to the earlier job), as few as cover the need on every node."""
    need_c = np.maximum(row * c[:, None] - cfree[e], 0.0)
    need_m = np.maximum(row * mm[:, None] - mfree[e], 0.0)
    short = (need_c > _EPS) | (need_m > _EPS)  # (b, N)
    Pe = P[e]  # (b, S, N)
    dn = done[e]
    sur_c = np.where(dn, np.maximum(np.nan_to_num(pc[e]) - jfc[e], 0.0), 0.0)
    sur_m = np.where(dn, np.maximum(np.nan_to_num(pm[e]) - jfm[e], 0.0), 0.0)
    touch = ((Pe > 0) & short[:, None, :]).any(axis=2)
    elig = dn & touch & ((sur_c > _EPS) | (sur_m > _EPS))
    rows = np.arange(len(e))[:, None]
    srt = np.argsort(np.where(elig, job[e], _BIG), axis=1, kind="stable")
    for key in (-np.nan_to_num(pm[e]), -np.nan_to_num(pc[e]), (Pe > 0).sum(axis=2)):  # least significant first
        k = np.where(elig, key, np.inf)[rows, srt]
        srt = srt[rows, np.argsort(k, axis=1, kind="stable")]
    gain_c = (Pe * sur_c[:, :, None])[rows, srt]
    gain_m = (Pe * sur_m[:, :, None])[rows, srt]
    cum_c, cum_m = np.cumsum(gain_c, axis=1), np.cumsum(gain_m, axis=1)
    el = elig[rows, srt]
    enough = el & ((cum_c + _EPS >= need_c[:, None, :]) & (cum_m + _EPS >= need_m[:, None, :])).all(axis=2)
    k = np.where(enough.any(axis=1), enough.argmax(axis=1), P.shape[1])
    take_sorted = el & (np.arange(P.shape[1])[None, :] <= k[:, None])
    take = np.zeros_like(take_sorted)
    take[rows, srt] = take_sorted
    cfree[e] += (Pe * np.where(take, sur_c, 0.0)[:, :, None]).sum(axis=1)
    mfree[e] += (Pe * np.where(take, sur_m, 0.0)[:, :, None]).sum(axis=1)
    pc[e] = np.where(take, pc[e] - sur_c, pc[e])
    pm[e] = np.where(take, pm[e] - sur_m, pm[e])


class Synergy(Baseline):
    """GPU admission by LAS (or FIFO); CPUs and memory by Synergy-TUNE, -GREEDY or GPU-proportional."""

    name = "synergy"
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "cpu_ask": (np.float64, np.nan),  # CPUs per GPU last asked of the core
        "mem_ask": (np.float64, np.nan),  # GB per GPU last asked
    }

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        mode: str = "tune"
        """CPU and memory allocation: ``"tune"`` (Synergy-TUNE), ``"greedy"`` or ``"proportional"``"""
        order: str = "las"
        """GPU admission order: ``"las"`` (least attained service) or ``"fifo"``"""
        round_length: float = 300.0
        """round length, seconds (Synergy's round)"""

        def __post_init__(self) -> None:
            mode, order, round_length = self.mode, self.order, self.round_length
            if mode not in MODES:
                raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
            if order not in ORDERS:
                raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
            if not (np.isfinite(round_length) and round_length > 0):
                raise ValueError(f"round_length must be a finite number of seconds > 0, got {round_length!r}")
            self._set(round_length=float(round_length))

    def scores(self, view: ClusterView) -> np.ndarray:
        """The host policy's order (higher first; ties go to the earlier job): least attained
        service (the scores of :class:`baselines.las.LAS`), or arrival."""
        key = view.attained if self.order == "las" else view.submit
        return np.where(view.status != EMPTY, -key, -np.inf)

    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        scores = self.scores(view)
        boundary = np.array(view.at_round_boundary, dtype=bool)
        if not view.resources:
            return Priority(scores, preempt=boundary)
        wait = view.waiting
        gpus = view.gpus
        free_t = view.free_per_type()
        fits = (wait[:, :, None] & (gpus[:, :, None] <= free_t[:, None, :])).any(axis=(1, 2))
        replan = boundary | fits
        if not replan.any():
            return None
        # 1. GPU admission by the host order (preemptive at round boundaries)
        n_adm, t_adm = allocation(view, scores, preempt=boundary)
        run = view.running
        admitted = replan[:, None] & (n_adm > 0)
        kept = admitted & run & (t_adm == view.gpu_type) & ~(boundary[:, None] & reconsolidate(view))
        # 2. CPUs and memory, serving largest gangs first (kept jobs first between rounds)
        between = (~boundary)[:, None] & kept
        serve = order_scores(view, [np.where(between, 0, 1), -gpus, -scores], admitted)
        order = serve_order(view, serve, admitted)
        count = admitted.sum(axis=1)
        P, pc, pm, skipped = plan_resources(
            self.mode, order, count, kept, gpus, t_adm, view.model, view.job, view.placement,
            view.node_type, view.node_capacity, view.node_cpus, view.node_mem)
        placed = admitted & ~skipped
        rc, rm = self.jobs.gather_many(view, ("cpu_ask", "mem_ask"))
        if self.mode == "proportional":
            pc = np.full_like(pc, np.nan)
            pm = np.full_like(pm, np.nan)
        live = view.status != EMPTY
        cpus = np.where(replan[:, None] & placed, pc, rc)
        mem = np.where(replan[:, None] & placed, pm, rm)
        n = np.where(replan[:, None], np.where(placed, gpus, 0), view.allocated)
        t = np.where(replan[:, None] & placed, t_adm, view.gpu_type)
        place = np.where((replan[:, None] & placed)[:, :, None], P, 0)
        self.jobs.scatter_many(view, live & replan[:, None], {"cpu_ask": cpus, "mem_ask": mem})
        return Allocation(n, t, place=place, cpus=cpus, mem=mem)


class SynergyGreedy(Synergy):
    """Synergy-GREEDY: ideal demand or skip the job this round."""

    name = "synergy_greedy"

    @dataclass(frozen=True)
    class Knobs(Synergy.Knobs):
        mode: str = field(default="greedy", init=False)
        """Synergy-GREEDY (fixed): each job's ideal CPUs and memory, or it waits"""


class SynergyProportional(Synergy):
    """The GPU-proportional twin: Synergy's GPU admission, CPUs and memory in proportion to GPUs."""

    name = "synergy_proportional"

    @dataclass(frozen=True)
    class Knobs(Synergy.Knobs):
        mode: str = field(default="proportional", init=False)
        """CPUs and memory in proportion to GPUs (fixed)"""
