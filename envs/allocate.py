"""The ``allocate`` action mode: per visible job a priority level, a GPU type, a GPU count and a
batch-size choice, lowered to one :class:`~envs.policy.Allocation` for the core.

An action is a ``MultiDiscrete`` vector of ``K`` groups (one per visible slot, slot-major) of
:data:`DIMENSIONS` entries each:

============  ====================  =====================================================
dimension     values                meaning
============  ====================  =====================================================
``level``     ``0 .. LEVELS - 1``   0: do not run (preempt a running job when allowed);
                                    higher levels are served first
``gpu_type``  ``0 .. T - 1``        the GPU type index (``ClusterCore.gpu_types``)
``gpus``      ``0 .. C - 1``        ``gpus + 1`` GPUs, ``C`` the largest GPU-type pool
``batch``     ``0, 1``              goodput jobs: 1 trains at the goodput-optimal batch
                                    size (:mod:`envs.goodput`), 0 at the job's own
============  ====================  =====================================================

*Reallocating* envs are those at a preemption point (``preemption=True`` and a round boundary, or
every step with ``preempt_every_event``): there every visible job, running or not, is decided
afresh (a running job given the same type and count keeps its placement and pays nothing).
Elsewhere running jobs keep their GPUs and only waiting jobs may start.

The mask (:func:`masks`, sb3-contrib's ``MaskableMultiCategoricalDistribution`` layout: the
per-dimension masks of every group concatenated) allows, for a job that may (re)start now: every
level; the types with at least ``min_gpus`` GPUs available (free GPUs, or at a reallocation the
whole type less the GPUs that jobs not visible keep); the counts from ``min_gpus`` to the
smaller of ``max_gpus`` and the most GPUs available on an allowed type (a rigid job: its request
only). A running job that keeps its GPUs: the levels above 0, its type and its count. A job that
cannot run now and an empty slot: value 0 of every dimension. ``batch`` 1 only for goodput jobs.

Each dimension is allowed on its own, so a combination can still be infeasible (type A with room
for 2 GPUs, count 8 allowed for type B), and several jobs can ask for the same GPUs. The lowering
(:func:`lower`) serves the visible jobs with level > 0 by decreasing level, ties to the earlier
job (workload order), each getting its count of its type from what is left; if that does not
fit, it gets as many as are left on its type (at least ``min_gpus``), else as many as are left on
the fastest type for its model with room, else nothing. A masked or out-of-range value is first
replaced (the first allowed level, the fastest allowed type, the nearest allowed count, the first
allowed batch choice) and counted as an invalid action (once per env and step).
"""

from __future__ import annotations

import numpy as np

from envs.core import EMPTY, RUNNING, WAITING, ClusterCore
from envs.policy import Allocation

#: priority levels of the ``level`` dimension (0: do not run)
LEVELS = 4
#: the dimensions of each slot's group, in action order
DIMENSIONS = ("level", "gpu_type", "gpus", "batch")


class AllocateLayout:
    """Sizes of the allocate action for ``K`` visible slots on a core (``T`` types, ``C`` counts)."""

    def __init__(self, core: ClusterCore, K: int) -> None:
        self.K = int(K)
        self.T = int(core.T)
        self.C = int(core.capacity.max())
        self.sizes = np.array([LEVELS, self.T, self.C, 2], dtype=np.int64)
        self.D = len(self.sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.group = int(self.sizes.sum())

    @property
    def nvec(self) -> np.ndarray:
        """The ``MultiDiscrete`` sizes: :data:`DIMENSIONS` repeated for each of the ``K`` slots."""
        return np.tile(self.sizes, self.K)

    @property
    def mask_size(self) -> int:
        return self.K * self.group


def available(core: ClusterCore, vis: np.ndarray, realloc: np.ndarray) -> np.ndarray:
    """``(E, T)`` GPUs of each type the visible jobs may take now: free GPUs, and in the
    ``realloc`` envs every GPU except those held by running jobs that are not visible."""
    E, S = core.s_status.shape
    shown = np.zeros((E, S), dtype=bool)
    np.put_along_axis(shown, vis, True, axis=1)
    hidden_run = (core.s_status == RUNNING) & ~shown & ~core.s_guest
    held = np.zeros((E, core.T), dtype=np.int64)
    for k in range(core.T):
        held[:, k] = np.where(hidden_run & (core.s_t == k), core.s_n, 0).sum(axis=1)
    return np.where(realloc[:, None], core.capacity[None, :] - held, core.free_per_type())


def _slot_state(core: ClusterCore, vis: np.ndarray, realloc: np.ndarray):
    """Per visible slot: status, whether it may (re)start now, keeps its GPUs, and its bounds."""
    st = np.take_along_axis(core.s_status, vis, axis=1)
    present = st != EMPTY
    run = st == RUNNING
    free_choice = (st == WAITING) | (run & realloc[:, None])
    fixed = run & ~realloc[:, None]
    lo = np.take_along_axis(core.s_min, vis, axis=1)
    hi = np.take_along_axis(core.s_max, vis, axis=1)
    return st, present, free_choice, fixed, lo, hi


def masks(core: ClusterCore, layout: AllocateLayout, vis: np.ndarray, realloc: np.ndarray) -> np.ndarray:
    """``(E, K * group)`` bool: the allowed values of every dimension of every visible slot (see
    the module docstring), concatenated slot by slot."""
    E, K, T, C = vis.shape[0], layout.K, layout.T, layout.C
    _st, present, free_choice, fixed, lo, hi = _slot_state(core, vis, realloc)
    avail = available(core, vis, realloc)
    type_ok = free_choice[:, :, None] & (avail[:, None, :] >= lo[:, :, None])  # (E, K, T)
    runnable = type_ok.any(axis=2)
    top = np.where(type_ok, avail[:, None, :], 0).max(axis=2)
    count_hi = np.minimum(hi, top)
    counts = np.arange(1, C + 1)[None, None, :]
    cur_n = np.take_along_axis(core.s_n, vis, axis=1)
    cur_t = np.take_along_axis(core.s_t, vis, axis=1)
    goodput = present & (np.take_along_axis(core.s_kind, vis, axis=1) >= 0)

    level = np.zeros((E, K, LEVELS), dtype=bool)
    level[:, :, 0] = ~fixed
    level[:, :, 1:] = (runnable | fixed)[:, :, None]
    gtype = np.where(runnable[:, :, None], type_ok, False)
    gtype |= fixed[:, :, None] & (np.arange(T)[None, None, :] == cur_t[:, :, None])
    gtype[:, :, 0] |= ~(runnable | fixed)
    gpus = runnable[:, :, None] & (counts >= lo[:, :, None]) & (counts <= count_hi[:, :, None])
    gpus |= fixed[:, :, None] & (counts == cur_n[:, :, None])
    gpus[:, :, 0] |= ~(runnable | fixed)
    batch = np.ones((E, K, 2), dtype=bool)
    batch[:, :, 1] = goodput
    return np.concatenate([level, gtype, gpus, batch], axis=2).reshape(E, K * layout.group)


def split(layout: AllocateLayout, mask: np.ndarray) -> list[np.ndarray]:
    """The ``(E, K, size)`` mask of each dimension from a flat ``(E, K * group)`` mask."""
    m = mask.reshape(mask.shape[0], layout.K, layout.group)
    return [m[:, :, o:o + n] for o, n in zip(layout.offsets, layout.sizes, strict=True)]


def parse(layout: AllocateLayout, actions: np.ndarray, E: int) -> tuple[np.ndarray, np.ndarray]:
    """``(E, K, D)`` int64 values and whether each is a valid integer in its range."""
    raw = np.asarray(actions)
    if raw.size != E * layout.K * layout.D:
        raise ValueError(f"an allocate action has {layout.K * layout.D} entries per env ({layout.K} slots x "
                         f"{layout.D} dimensions {DIMENSIONS}), got shape {raw.shape}")
    f = raw.reshape(E, layout.K, layout.D)
    if f.dtype.kind in "iub":
        a = f.astype(np.int64)
        ok = np.ones(a.shape, dtype=bool)
    else:  # a non-integer value (1.7, NaN) names no choice: forbidden, not rounded
        f = f.astype(np.float64)
        ok = np.isfinite(f) & (f == np.floor(f))
        a = np.where(ok, f, -1).astype(np.int64)
    ok &= (a >= 0) & (a < layout.sizes[None, None, :])
    return np.where(ok, a, 0), ok


def lower(core: ClusterCore, layout: AllocateLayout, vis: np.ndarray, realloc: np.ndarray, mask: np.ndarray,
          actions: np.ndarray, envs: np.ndarray) -> tuple[Allocation, np.ndarray]:
    """The :class:`~envs.policy.Allocation` of an allocate action (module docstring) for the envs
    in the mask ``envs``, and ``(E,)`` whether an env's action held a masked or out-of-range value
    for a present job. ``mask`` is :func:`masks` of the current state."""
    E, K = vis.shape
    a, in_range = parse(layout, actions, E)
    _st, present, free_choice, fixed, lo, _hi = _slot_state(core, vis, realloc)
    m_level, m_type, m_gpus, m_batch = split(layout, mask)
    model = np.take_along_axis(core.s_model, vis, axis=1)
    speed = core.speed[model]  # (E, K, T)

    def allowed(m: np.ndarray, v: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return ok & np.take_along_axis(m, v[:, :, None], axis=2)[:, :, 0]

    level, gtype, gpus, batch = (a[:, :, i] for i in range(layout.D))
    ok_level = allowed(m_level, level, in_range[:, :, 0])
    ok_type = allowed(m_type, gtype, in_range[:, :, 1])
    ok_gpus = allowed(m_gpus, gpus, in_range[:, :, 2])
    ok_batch = allowed(m_batch, batch, in_range[:, :, 3])
    invalid = (present & ~(ok_level & ok_type & ok_gpus & ok_batch)).any(axis=1) & envs
    # replacements: first allowed level / batch, fastest allowed type, nearest allowed count
    level = np.where(ok_level, level, m_level.argmax(axis=2))
    batch = np.where(ok_batch, batch, m_batch.argmax(axis=2))
    gtype = np.where(ok_type, gtype, np.where(m_type, speed, -np.inf).argmax(axis=2))
    C = layout.C
    idx = np.arange(C)[None, None, :]
    g_lo = np.where(m_gpus, idx, C).min(axis=2)
    g_hi = np.where(m_gpus, idx, -1).max(axis=2)
    gpus = np.where(ok_gpus, gpus, np.clip(gpus, g_lo, g_hi))
    want = gpus + 1

    # serve by decreasing level, ties to the earlier job
    job = np.take_along_axis(core.s_job, vis, axis=1)
    serve = present & free_choice & (level > 0) & envs[:, None]
    order = np.lexsort((job, -level, ~serve), axis=1)
    avail = available(core, vis, realloc)
    n_vis = np.where(fixed, np.take_along_axis(core.s_n, vis, axis=1), 0)
    t_vis = np.where(fixed, np.take_along_axis(core.s_t, vis, axis=1), gtype)
    r0 = np.arange(E)
    for i in range(K):
        k = order[:, i]
        on = serve[r0, k]
        if not on.any():
            break
        t = gtype[r0, k]
        need = lo[r0, k]
        n = np.minimum(want[r0, k], avail[r0, t])
        fits = n >= need
        room = avail >= need[:, None]
        alt = np.where(room, core.speed[model[r0, k]], -np.inf).argmax(axis=1)
        t = np.where(fits, t, alt)
        n = np.where(fits, n, np.minimum(want[r0, k], avail[r0, alt]))
        take = on & (fits | room.any(axis=1)) & (n >= need)
        n = np.where(take, n, 0)
        avail[r0, t] -= n
        n_vis[r0, k] = np.where(on, n, n_vis[r0, k])
        t_vis[r0, k] = np.where(on, t, t_vis[r0, k])
    # the whole allocation: hidden running jobs keep their GPUs, hidden waiting ones wait
    n_full = np.where(core.s_status == RUNNING, core.s_n, 0)
    t_full = core.s_t.copy()
    np.put_along_axis(n_full, vis, np.where(present, n_vis, 0), axis=1)
    np.put_along_axis(t_full, vis, np.where(present & (n_vis > 0), t_vis, np.take_along_axis(core.s_t, vis, axis=1)),
                      axis=1)
    goodput = np.take_along_axis(core.s_kind, vis, axis=1) >= 0
    adapt = core.s_adapt.copy()
    np.put_along_axis(adapt, vis, np.where(present & goodput, batch == 1, np.take_along_axis(adapt, vis, axis=1)),
                      axis=1)
    return Allocation(n_full, t_full, adaptive=adapt), invalid


def encode(core: ClusterCore, layout: AllocateLayout, vis: np.ndarray, mask: np.ndarray, n: np.ndarray,
           t: np.ndarray, adaptive: np.ndarray | None) -> np.ndarray:
    """The ``(E, K * D)`` allocate action that asks for the allocation ``(n, t)`` (``(E, S)``
    each, with the goodput batch choice ``adaptive``) for the visible slots: level ``LEVELS - 1``
    for jobs given GPUs, 0 for the others; values an allocation leaves open (the type and count of
    a job given nothing, the batch of a plain job) take the first allowed value."""
    E, K = vis.shape
    nv = np.take_along_axis(np.asarray(n, dtype=np.int64), vis, axis=1)
    tv = np.take_along_axis(np.asarray(t, dtype=np.int64), vis, axis=1)
    ad = core.s_adapt if adaptive is None else np.asarray(adaptive, dtype=bool)
    bv = np.take_along_axis(ad, vis, axis=1).astype(np.int64)
    m_level, m_type, m_gpus, m_batch = split(layout, mask)
    on = nv > 0
    level = np.where(on, LEVELS - 1, 0)
    level = np.where(np.take_along_axis(m_level, level[:, :, None], axis=2)[:, :, 0], level, m_level.argmax(axis=2))
    gtype = np.where(on, tv, m_type.argmax(axis=2))
    gpus = np.where(on, nv - 1, m_gpus.argmax(axis=2))
    ok_b = np.take_along_axis(m_batch, bv[:, :, None], axis=2)[:, :, 0]
    batch = np.where(ok_b, bv, m_batch.argmax(axis=2))
    return np.stack([level, gtype, gpus, batch], axis=2).reshape(E, K * layout.D)
