"""CASSINI (Rajasekaran et al., NSDI'24): network-aware placement that interleaves the
communication phases of jobs sharing network links.

Paper: "CASSINI: Network-Aware Job Scheduling in Machine Learning Clusters", NSDI'24; rules as
summarised in ``../shared/papers/modern.md`` section 7 (from the paper's abstract and a
third-party re-implementation; details unverified there).

CASSINI is a module plugged into a host scheduler (Themis, Pollux in the paper): the host decides
*which* jobs run on how many GPUs; CASSINI decides *where* the ones that start are placed and how
their communication is time-shifted. Without a network model it is its host, and so is this
policy on a core built without ``network=True`` (the default Gymnasium env): it returns the
host's decision unchanged.

Models (the simulator's network model, :class:`envs.core.ClusterCore` with ``network=True``):

- Each node has one uplink. A job spanning nodes spends a fraction ``phi`` of its iteration
  communicating (``view.comm_fraction`` of its model, ``1 - LOCALITY``: LM 0.54, ResNet-18 0.32,
  Transformer 0.30, ResNet-50 0.04) on the links of all its nodes. On a link whose spanning
  jobs' ``phi`` sum to ``L``, a job's communication takes ``1 + L - phi`` times longer when the
  phases fall at random, ``max(1, L)`` when every job on the link is time-shifted; its iteration
  time is multiplied by ``(1 - phi) + phi * s`` with ``s`` its worst link's factor.
- How the geometric abstraction maps onto it: CASSINI draws one iteration as a circle whose
  perimeter is the iteration time, communication as arcs, and puts jobs with different
  iteration times on a unified circle (the LCM of their periods, each pattern repeated). On the
  unified circle a job's arcs cover the fraction ``phi`` of the perimeter whatever its period,
  so the total arc length on a link is ``L`` perimeters; rotating the circles (time shifts) can
  make the arcs disjoint exactly when ``L <= 1``, and otherwise at best leaves the link busy all
  the time, ``L - 1`` perimeters over capacity. That best rotation is the simulator's
  ``max(1, L)`` (the fluid limit of a perfect rotation: arcs are taken as divisible). CASSINI's
  link compatibility score ``1 - mean excess demand / capacity`` is then
  ``1 - max(0, L - 1)`` (clipped at 0): 1 is perfectly interleavable (:func:`compatibility`).
- Placement (for the jobs the host starts or resizes; jobs whose count, type and partner are
  unchanged keep their nodes, as :meth:`~envs.core.ClusterCore.apply` does): jobs are placed
  in workload order, as the core places them (largest-first was tried: no better). A job that
  fits on one node goes there, best fit (the consolidate-first rule: it uses no link). A job
  that must span nodes takes the fewest nodes the free GPUs allow (spreading further only adds
  links and the locality penalty), and among the sets of that many nodes, drawn from the
  ``pool`` nodes of its type with the most free GPUs (all combinations, at most
  ``max_candidates``), CASSINI takes the one with the lowest predicted total iteration time of
  all spanning jobs (the model above, :func:`iteration_factor`, under the shifts it would then
  assign: its compatibility score turned into time), ties to the fewest GPUs left free on the
  chosen nodes (best fit, less fragmentation), then to the lowest peak link load, then to the
  consolidate-first choice (the candidate ranked first). A candidate whose links all stay at
  ``L <= 1`` with consistent shifts costs nothing: it is perfectly compatible.
- Affinity graph and shifts: jobs and links form CASSINI's bipartite affinity graph (a
  spanning job is joined to each link it uses; links carrying exactly the same jobs ask for the
  same relative shifts and are merged). Per-link shifts can be made consistent for a connected
  component exactly when it has no loop (CASSINI's BFS from a root job at shift 0, each
  neighbour's shift derived through the link they share). Every spanning job of a loop-free
  component is time-shifted (``Allocation(shift=True)``), on links with ``L > 1`` too: the best
  rotation still beats random phases there (``max(1, L) < 1 + L - phi``), as CASSINI shifts
  whatever the score. In a component with a loop the links that close it cannot all be
  aligned; in the simulator a link counts as aligned only when all its jobs are shifted, so a
  greedy pass (:func:`consistent_shifts`) gives up the shift of one job at a time (the one on
  most shared aligned links) until the aligned links form no loop: BFS over a spanning forest.
  ``consistent=False`` trusts every per-link rotation instead (all spanning jobs shifted, what
  the simulator would grant). With ``avoid_loops``, a candidate placement that would close a
  loop (or join a component that has one) is taken only when every candidate does (CASSINI
  discards such placements; the predicted cost already counts the shifts a loop loses, and on
  the test workloads the rule never changed a choice: loops arose only where every candidate
  closed one).

Simplifies:

- Jobs have no iteration times in the simulator, so the unified circle, its LCM and the per-link
  rotation search reduce to the fluid ``max(1, L)`` above; a shift is a flag, not an angle, and
  the delay a job pays to start at its shift (a fraction of one iteration) and the drift
  re-alignment are not modelled.
- Link demand is the job's communication fraction with full link bandwidth during its phase
  (the simulator's model): no per-job bandwidth demand or topology beyond one uplink per node.
- The host proposes one allocation (its set of jobs and GPU counts) and CASSINI searches the
  placements of that set, rather than scoring several host candidates; running jobs are never
  migrated to improve compatibility (moving costs a restart).
- The host's own placement preferences (e.g. Tiresias' consolidation wait) decide only which
  jobs run; CASSINI places them.

Knobs: ``host="themis"`` (the name of a registered baseline, or a :class:`Baseline` instance:
the paper integrates with Themis), ``host_knobs`` (passed to the host), ``shifts=True``
(time-shift spanning jobs), ``search=True`` (network-aware placement; ``False`` places as the
core's consolidate-first placer would and only shifts), ``avoid_loops=True``,
``consistent=True`` (shifts only where consistent, see above), ``pool=12`` (nodes per type
considered for a spanning job) and ``max_candidates=512`` (candidate node sets per job).
``needs_durations`` and ``round_length`` are the host's.

Measured (``tests/test_cassini.py``: 40 jobs, 60% LM/ResNet-18/Transformer gangs of 6-10 GPUs
on 8 x 4-GPU nodes, 15 seeds, Themis host): iteration time of spanning jobs x1.143 with
consolidate-first placement, x1.051 with CASSINI; average JCT -7.4%. Shifts alone (``search=False``)
give x1.060 and -4.6%, placement alone (``shifts=False``) x1.119 and -3.6%; trusting every
rotation (``consistent=False``) x1.017 and -7.9%. With Tiresias as host: x1.169 -> x1.068 and
-12.3% average JCT.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from baselines.base import EMPTY, Baseline, BaselineKnobs
from envs.core.coupling import iteration_factor
from envs.lowering import allocation
from envs.placement import consolidate_first
from envs.policy import Allocation, ClusterView, Priority

__all__ = ["Cassini", "affinity", "compatibility", "consistent_shifts", "iteration_factor", "link_loads"]

_BIG = np.iinfo(np.int64).max


# ---------------------------------------------------------------------------------- the model
def compatibility(load: np.ndarray) -> np.ndarray:
    """CASSINI's compatibility score of links with total communication fraction ``load``:
    ``1 - mean excess demand / capacity`` at the best rotation, ``clip(2 - L, 0, 1)``."""
    return np.clip(2.0 - np.asarray(load, dtype=np.float64), 0.0, 1.0)


def link_loads(on: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``(E, N)`` total communication fraction on each node's link, from ``on`` (``(E, S, N)``,
    spanning job ``s`` uses node ``n``'s link) and ``phi`` (``(E, S)``)."""
    return np.einsum("es,esn->en", phi, on.astype(np.float64))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 of non-negative integers (a hash whose sums identify sets of jobs)."""
    z = (np.asarray(x, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def affinity(on: np.ndarray, job: np.ndarray) -> dict[str, np.ndarray]:
    """CASSINI's job-link affinity graph, per env.

    ``on`` (``(E, S, N)`` bool): spanning job ``s`` uses node ``n``'s link; ``job`` (``(E, S)``)
    the jobs' workload positions (to identify sets of jobs). Links carrying the same set of jobs
    are merged (they ask for the same relative shifts). Returns ``label`` (``(E, S)`` component of
    each spanning job, ``_BIG`` elsewhere), ``link_label`` (``(E, N)``, ``_BIG`` for unused links),
    ``key`` (``(E, N)`` hash of each link's job set), ``job_loop`` (``(E, S)``: the job's component
    has a loop) and ``link_loop`` (``(E, N)``)."""
    E, S_all, N = on.shape
    span_all = on.any(axis=2)
    cols = np.flatnonzero(span_all.any(axis=0))  # only slots that span somewhere
    on = on[:, cols]
    span = span_all[:, cols]
    S = len(cols)
    used = on.any(axis=1)
    key = (on.astype(np.uint64) * _mix(np.maximum(job[:, cols], 0))[:, :, None]).sum(axis=1, dtype=np.uint64)
    # the first link of each distinct job set (sort the keys per env, keep the first of each run)
    k = np.where(used, key, np.uint64(0))
    order = np.argsort(k, axis=1, kind="stable")
    sk = np.take_along_axis(k, order, axis=1)
    first = np.ones((E, N), dtype=bool)
    first[:, 1:] = sk[:, 1:] != sk[:, :-1]
    uniq = np.zeros((E, N), dtype=bool)
    np.put_along_axis(uniq, order, first, axis=1)
    uniq &= used
    rows = np.arange(E)[:, None]
    label = np.where(span, np.arange(S)[None, :], _BIG)
    while True:
        link_label = np.where(on, label[:, :, None], _BIG).min(axis=1, initial=_BIG)
        new = np.where(on, link_label[:, None, :], _BIG).min(axis=2, initial=_BIG)
        new = np.where(span, np.minimum(new, label), _BIG)
        if (new == label).all():
            break
        label = new
    # vertices and edges per component (labels are column indices < S)
    width = S + 1
    e, c = np.nonzero(span)
    verts = np.bincount(e * width + label[e, c], minlength=E * width)
    e, n = np.nonzero(uniq)
    cell = e * width + link_label[e, n]
    verts = verts + np.bincount(cell, minlength=E * width)
    edges = np.bincount(cell, weights=on[e, :, n].sum(axis=1), minlength=E * width)
    loop = (edges > verts - 1).reshape(E, width)
    job_loop = np.zeros((E, S_all), dtype=bool)
    job_loop[:, cols] = span & loop[rows, np.minimum(label, S)]
    link_loop = used & loop[rows, np.minimum(link_label, S)]
    full_label = np.full((E, S_all), _BIG, dtype=np.int64)
    full_label[:, cols] = label
    return {"label": full_label, "link_label": link_label, "key": key, "job_loop": job_loop, "link_loop": link_loop}


@lru_cache(maxsize=256)
def _combos(M: int, k: int) -> np.ndarray:
    return np.array(list(itertools.combinations(range(M), k)), dtype=np.int64).reshape(-1, k)


# ---------------------------------------------------------------------------------- the policy
class Cassini(Baseline):
    """A host scheduler's allocation, placed and time-shifted for compatible links."""

    name = "cassini"

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        host: str | Baseline = "themis"
        """the host scheduler: a registered baseline's name or a :class:`Baseline` instance (the
        paper integrates with Themis); ``needs_durations`` and ``round_length`` are the host's"""
        host_knobs: dict | None = field(default_factory=dict)
        """knobs of a host given by name"""
        shifts: bool = True
        """time-shift spanning jobs"""
        search: bool = True
        """network-aware placement (``False``: the core's consolidate-first placement, shifts only)"""
        avoid_loops: bool = True
        """avoid placements whose link-sharing graph has a loop"""
        consistent: bool = True
        """shift only where the shifts are consistent (see the module docstring)"""
        pool: int = 12
        """nodes per GPU type considered for a spanning job"""
        max_candidates: int = 512
        """candidate node sets per job"""

        def __post_init__(self) -> None:
            host, host_knobs = self.host, self.host_knobs
            if isinstance(host, Baseline):
                if host_knobs:
                    raise ValueError("host_knobs is for a host given by name; configure the host instance instead")
                if isinstance(host, Cassini):
                    raise ValueError("CASSINI cannot host itself")
            elif isinstance(host, str):
                if host == Cassini.name:
                    raise ValueError("CASSINI cannot host itself")
            else:
                raise ValueError(f"host must be a baseline name or a Baseline instance, got {host!r}")
            for knob in ("shifts", "search", "avoid_loops", "consistent"):
                value = getattr(self, knob)
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"{knob} must be a bool, got {value!r}")
            for knob in ("pool", "max_candidates"):
                value = getattr(self, knob)
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                    raise ValueError(f"{knob} must be an integer >= 1, got {value!r}")
            self._set(host_knobs=dict(host_knobs or {}), shifts=bool(self.shifts), search=bool(self.search),
                      avoid_loops=bool(self.avoid_loops), consistent=bool(self.consistent), pool=int(self.pool),
                      max_candidates=int(self.max_candidates))

    def _derive(self) -> None:
        host = self.config.host
        if isinstance(host, str):
            from baselines import get  # the registry imports this module

            host = get(host, **self.config.host_knobs)
        self.host = host
        self.needs_durations = host.needs_durations
        self.round_length = host.round_length
        self._last_shift: tuple[np.ndarray, np.ndarray] | None = None  # (E,) key, (E, S) shifts

    def knobs(self) -> dict[str, object]:
        """The knobs with the host by name; a host given as an instance contributes its own
        knobs as ``host_knobs``, so the knobs rebuild an equal policy either way."""
        knobs = super().knobs()
        knobs["host"] = self.host.name
        knobs["host_knobs"] = dict(self.host_knobs) if isinstance(self.config.host, str) else self.host.knobs()
        return knobs

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        self.host.reset(view)
        self._last_shift = None

    def reset_envs(self, envs: np.ndarray) -> None:
        super().reset_envs(envs)
        self.host.reset_envs(envs)
        self._last_shift = None

    # ------------------------------------------------------------------ decision
    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        self.host.prepare(view)
        decision = self.host.plan(view)
        if not view.network:
            return decision  # no links to share: CASSINI is its host
        n, t, extra = self._host_allocation(view, decision)
        run = view.running
        p = extra.get("partner")
        cur_p = np.where(view.guest, view.partner, -1)
        p = cur_p if p is None else np.where(n > 0, np.asarray(p, dtype=np.int64), -1)
        keep = run & (n == view.allocated) & (t == view.gpu_type) & (p == cur_p)
        todo = (n > 0) & ~keep & (p < 0)
        guests = (n > 0) & ~keep & (p >= 0)
        place = self._place(view, n, t, keep, todo, aware=self.search) if todo.any() else None
        shift = self._shifts(view, keep, place) if self.shifts else np.zeros(n.shape, dtype=bool)
        changed = (run & ~keep).any() | todo.any() | guests.any()
        active = view.status != EMPTY
        if not changed and not (active & (shift != view.shift)).any() and not extra:
            return None
        return Allocation(n, t, place=place, shift=shift, **extra)

    def _host_allocation(self, view: ClusterView, decision) -> tuple[np.ndarray, np.ndarray, dict]:
        """The host's decision as GPU counts and types per slot (plus the parts of an
        ``Allocation`` CASSINI leaves as they are)."""
        run = view.running
        if decision is None:
            return np.where(run, view.allocated, 0), view.gpu_type.copy(), {}
        if isinstance(decision, Allocation):
            extra = {k: getattr(decision, k) for k in ("adaptive", "partner", "cpus", "mem")
                     if getattr(decision, k) is not None}
            n = np.asarray(decision.n, dtype=np.int64)
            return n, np.where(n > 0, np.asarray(decision.t, dtype=np.int64), view.gpu_type), extra
        if not isinstance(decision, Priority):
            raise TypeError(f"the host's decision must be Priority, Allocation or None, got {type(decision).__name__}")
        E = view.num_envs
        preempt = np.broadcast_to(np.asarray(decision.preempt, dtype=bool), (E,))
        scores = np.asarray(decision.scores, dtype=np.float64)
        got = allocation(view, scores, backfill=decision.backfill, preempt=preempt)
        n, t = got
        return np.asarray(n, dtype=np.int64), np.where(n > 0, t, view.gpu_type), {}

    # ------------------------------------------------------------------ placement
    def _place(self, view: ClusterView, n: np.ndarray, t: np.ndarray, keep: np.ndarray,
               todo: np.ndarray, *, aware: bool = True) -> np.ndarray:
        """``(E, S, N)`` explicit placements of the ``todo`` jobs (zeros elsewhere): CASSINI's
        (``aware``), or the core's own (consolidate-first in workload order, so that shifts can
        be assigned knowing where jobs will be)."""
        E, S = n.shape
        node_type = np.asarray(view.node_type)
        N = len(node_type)
        current = np.asarray(view.placement, dtype=np.int64)
        run = view.running
        leaving = run & ~keep & ~view.guest
        avail = np.asarray(view.free_per_node, dtype=np.int64).copy()
        avail += (current * leaving[:, :, None]).sum(axis=1)
        phi = np.asarray(view.comm_fraction)[view.model]
        kept_span = keep & ~view.guest
        on = (current > 0) & kept_span[:, :, None]
        on &= (on.sum(axis=2) > 1)[:, :, None]
        place = np.zeros((E, S, N), dtype=np.int64)
        job = view.job
        order = np.argsort(np.where(todo, job, _BIG), axis=1, kind="stable")  # workload order, as the core
        counts = todo.sum(axis=1)
        for r in range(int(counts.max(initial=0))):
            e = np.flatnonzero(counts > r)
            s = order[e, r]
            nj, tj = n[e, s], t[e, s]
            f = np.where(node_type[None, :] == tj[:, None], avail[e], 0)
            single = (f.max(axis=1) >= nj) | (not aware)
            take = np.zeros((len(e), N), dtype=np.int64)
            if single.any():
                take[single] = consolidate_first(avail[e[single]], node_type, tj[single], nj[single])
            span = ~single
            if span.any():
                take[span] = self._search(e[span], s[span], f[span], nj[span], phi, on, job)
            avail[e] -= take
            place[e, s] = take
            spans = (take > 0).sum(axis=1) > 1
            on[e[spans], s[spans]] = take[spans] > 0
        return place

    def _search(self, e: np.ndarray, s: np.ndarray, f: np.ndarray, nj: np.ndarray, phi: np.ndarray,
                on: np.ndarray, job: np.ndarray) -> np.ndarray:
        """Placements ``(B, N)`` of spanning jobs (env ``e``, slot ``s``) with free GPUs ``f``
        of their type (``(B, N)``), given the spanning jobs ``on`` placed so far: each
        candidate node set is scored by the total predicted iteration time of the spanning jobs
        (:func:`iteration_factor`) under the shifts CASSINI would then assign."""
        B, N = f.shape
        rank = np.lexsort((np.arange(N)[None, :].repeat(B, 0), -f), axis=1)  # most free first
        sf = np.take_along_axis(f, rank, axis=1)
        k_min = (np.cumsum(sf, axis=1) >= nj[:, None]).argmax(axis=1) + 1
        out = np.zeros((B, N), dtype=np.int64)
        on_e = on[e].copy()  # (B, S, N)
        on_e[np.arange(B), s] = False
        phi_e = phi[e]
        job_e = job[e]
        graph = affinity(on_e, job_e) if (self.shifts and self.consistent and self.avoid_loops) else None
        for k in np.unique(k_min):
            grp = np.flatnonzero(k_min == k)
            M = min(max(self.pool, int(k)), N)
            while M > k and math.comb(M, int(k)) > self.max_candidates:
                M -= 1
            combos = _combos(M, int(k))  # (C, k) positions in the ranking
            g, C = len(grp), len(combos)
            nodes = rank[grp][:, combos]  # (g, C, k)
            gi = np.arange(g)[:, None, None]
            fr = f[grp][gi, nodes]
            feas = (fr > 0).all(axis=2) & (fr.sum(axis=2) >= nj[grp][:, None])
            before = np.cumsum(fr, axis=2) - fr
            takes = np.clip(nj[grp][:, None, None] - before, 0, fr)
            # every candidate as a state of its own, over the slots that span: (g * C, S', N)
            cols = np.flatnonzero(on_e[grp].any(axis=(0, 2)) | np.isin(np.arange(on_e.shape[1]), s[grp]))
            on_c = np.repeat(on_e[grp][:, cols], C, axis=0)
            rows_c = np.arange(g * C)
            mine = np.zeros((g * C, N), dtype=bool)
            mine[rows_c[:, None], nodes.reshape(g * C, int(k))] = True
            on_c[rows_c, np.repeat(np.searchsorted(cols, s[grp]), C)] = mine
            phi_c = np.repeat(phi_e[grp][:, cols], C, axis=0)
            span_c = on_c.any(axis=2)
            if not self.shifts:
                shift_c = np.zeros_like(span_c)
            elif self.consistent:
                shift_c = consistent_shifts(on_c, phi_c, np.repeat(job_e[grp][:, cols], C, axis=0))
            else:
                shift_c = span_c
            total = np.where(span_c, iteration_factor(on_c, phi_c, shift_c), 0.0).sum(axis=1).reshape(g, C)
            primary = np.where(feas, np.round(total, 9), np.inf)
            load = link_loads(on_c, np.where(span_c, phi_c, 0.0)).reshape(g, C, N)
            peak = np.round(np.take_along_axis(load, nodes, axis=2).max(axis=2), 9)
            left = fr.sum(axis=2) - nj[grp][:, None]
            idx = np.broadcast_to(np.arange(C), primary.shape)
            # lexicographic, most significant last: predicted iteration time, then the fewest GPUs
            # left free on the chosen nodes (best fit: less fragmentation), then the lowest peak
            # link load, then the earliest combination (the first is consolidate-first's choice)
            keys = [idx, peak, left, primary]
            if graph is not None:  # CASSINI discards placements that close a loop
                lab = graph["link_label"][grp][gi, nodes]
                key = graph["key"][grp][gi, nodes]
                pair = (lab[:, :, :, None] == lab[:, :, None, :]) & (lab[:, :, :, None] < _BIG) \
                    & (key[:, :, :, None] != key[:, :, None, :])
                keys.append(pair.any(axis=(2, 3)) | graph["link_loop"][grp][gi, nodes].any(axis=2))
            keys.append(~feas)
            best = np.lexsort(tuple(keys), axis=-1)[:, 0]
            out[grp[:, None], nodes[np.arange(g), best]] = takes[np.arange(g), best]
        return out

    # ------------------------------------------------------------------ time shifts
    def _shifts(self, view: ClusterView, keep: np.ndarray, place: np.ndarray | None) -> np.ndarray:
        """``(E, S)`` shift flags for the kept jobs (on their current nodes) and the placed ones
        (``place``): :func:`consistent_shifts`."""
        spots = np.where((keep & ~view.guest)[:, :, None], np.asarray(view.placement, dtype=np.int64), 0)
        if place is not None:
            spots = spots + place
        on = spots > 0
        on &= (on.sum(axis=2) > 1)[:, :, None]
        if not on.any():
            return np.zeros(keep.shape, dtype=bool)
        # the shifts depend only on which jobs span which nodes: reuse them while that holds
        E, S, N = on.shape
        cell = np.maximum(view.job, 0)[:, :, None].astype(np.uint64) * np.uint64(N) + np.arange(N, dtype=np.uint64)
        key = np.where(on, _mix(cell), np.uint64(0)).sum(axis=(1, 2), dtype=np.uint64)
        last = self._last_shift
        if last is not None and last[1].shape == (E, S):
            same = key == last[0]
            if same.all():
                return last[1].copy()
        else:
            same = np.zeros(E, dtype=bool)
            last = (key, np.zeros((E, S), dtype=bool))
        phi = np.asarray(view.comm_fraction)[view.model]
        todo = ~same
        shift = last[1].copy()
        if self.consistent:
            shift[todo] = consistent_shifts(on[todo], phi[todo], view.job[todo])
        else:
            shift[todo] = on[todo].any(axis=2)
        self._last_shift = (key, shift.copy())
        return shift


def consistent_shifts(on: np.ndarray, phi: np.ndarray, job: np.ndarray) -> np.ndarray:
    """``(E, S)``: which spanning jobs (``on``, ``(E, S, N)``) get a time shift.

    A link is aligned when all its jobs are shifted. Shifts along aligned links are consistent
    when the affinity graph of the shifted jobs and their aligned links has no loop (CASSINI's BFS
    from a root job then gives every job one shift that suits all its links). Start from every
    spanning job shifted; while a component has a loop, give up the shift of one of its jobs
    (the one on most shared aligned links, ties to the smallest ``phi``, then the latest job):
    its links are no longer aligned, which breaks the loops through them. This is BFS over a
    spanning forest: the links left out are the ones whose phases CASSINI cannot align."""
    shifted = on.any(axis=2)
    live = np.flatnonzero(shifted.any(axis=1))  # envs that may still have loops
    while len(live):
        o, sh = on[live], shifted[live]
        aligned = ~(o & ~sh[:, :, None]).any(axis=1)  # (E', N)
        g_on = o & sh[:, :, None] & aligned[:, None, :]
        loop = affinity(g_on, job[live])["job_loop"]
        has = loop.any(axis=1)
        if not has.any():
            break
        shared = g_on & (g_on.sum(axis=1) > 1)[:, None, :]
        deg = np.where(loop, shared.sum(axis=2), -1)
        cand = loop & (deg == deg.max(axis=1, keepdims=True))
        low = np.where(cand, phi[live], np.inf)
        cand &= low == low.min(axis=1, keepdims=True)
        s = np.where(cand, job[live], -1).argmax(axis=1)
        shifted[live[has], s[has]] = False
        live = live[has]
    return shifted
