"""Placers: which nodes a gang of ``n`` GPUs of one type sits on.

A placer is a function ``placer(free, node_type, gpu_type, n) -> take`` over a batch of ``B``
independent requests (one per env), where ``free`` is ``(B, N)`` free GPUs per node,
``node_type`` is ``(N,)`` the type index of each node, ``gpu_type`` and ``n`` are ``(B,)``, and
``take`` is the ``(B, N)`` GPUs taken from each node. The caller guarantees that enough GPUs of
the type are free; a placer must take exactly ``n`` and never more than a node has free.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Placer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def consolidate_first(free: np.ndarray, node_type: np.ndarray, gpu_type: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Best fit on one node if any node of the type has ``n`` free (the fullest such node, ties to
    the lowest index); otherwise spread over the fewest nodes, emptiest first."""
    f = np.where(node_type[None, :] == gpu_type[:, None], free, 0).astype(np.int64)
    n = n.astype(np.int64)
    rows = np.arange(len(n))
    fits = f >= n[:, None]
    single = fits.any(axis=1)
    best = np.where(fits, f, np.iinfo(np.int64).max).argmin(axis=1)
    order = np.argsort(-f, axis=1, kind="stable")
    sorted_free = np.take_along_axis(f, order, axis=1)
    before = np.cumsum(sorted_free, axis=1) - sorted_free
    takes = np.clip(n[:, None] - before, 0, sorted_free)
    take = np.zeros_like(f)
    np.put_along_axis(take, order, takes, axis=1)
    take[single] = 0
    take[rows[single], best[single]] = n[single]
    return take


def spread(free: np.ndarray, node_type: np.ndarray, gpu_type: np.ndarray, n: np.ndarray) -> np.ndarray:
    """One GPU per node round-robin over the nodes of the type with the most free GPUs first:
    a locality-agnostic placer, useful to measure what consolidation is worth."""
    f = np.where(node_type[None, :] == gpu_type[:, None], free, 0).astype(np.int64)
    take = np.zeros_like(f)
    remaining = n.astype(np.int64).copy()
    while (remaining > 0).any():
        step = (f - take > 0) & (remaining[:, None] > 0)
        # take at most one GPU per node per pass, in node order, until the request is met
        cum = np.cumsum(step, axis=1)
        step &= cum <= remaining[:, None]
        take += step
        remaining -= step.sum(axis=1)
    return take


PLACERS: dict[str, Placer] = {"consolidate": consolidate_first, "spread": spread}


def place_in_order(free: np.ndarray, node_type: np.ndarray, order: np.ndarray, todo: np.ndarray,
                   n: np.ndarray, t: np.ndarray, placer: Placer) -> np.ndarray:
    """``(E, S, N)`` GPUs per node of the ``todo`` slots (``(E, S)``), placed one after another
    in ``order`` (``(E, S)`` slot indices; non-``todo`` slots are skipped) by ``placer`` on the
    ``free`` GPUs (``(E, N)``), each taking ``n`` GPUs of type ``t`` (``(E, S)``): what the core
    does when it starts jobs without an explicit placement. The caller guarantees that the GPUs
    are there. One placer call per rank, vectorised over envs."""
    E, S = todo.shape
    avail = np.array(free, dtype=np.int64, copy=True)
    place = np.zeros((E, S, avail.shape[1]), dtype=np.int64)
    rows = np.arange(E)[:, None]
    ranked = todo[rows, order]
    pick = np.argsort(~ranked, axis=1, kind="stable")  # todo slots first, in ``order``
    counts = ranked.sum(axis=1)
    for r in range(int(counts.max(initial=0))):
        e = np.flatnonzero(counts > r)
        s = order[e, pick[e, r]]
        take = placer(avail[e], node_type, t[e, s], n[e, s])
        avail[e] -= take
        place[e, s] = take
    return place


def get(placer: str | Placer) -> Placer:
    if callable(placer):
        return placer
    if placer not in PLACERS:
        raise ValueError(f"unknown placer {placer!r}; placers are {sorted(PLACERS)}")
    return PLACERS[placer]
