"""Rates: how fast a job progresses on its allocation (speed model, goodput phases, dynamic
adaptation). The formulas shared with policies are plain functions here."""

from __future__ import annotations

import numpy as np

from envs.core.state import INF
from envs.goodput import GoodputTable


def growth_multiplier(growth: np.ndarray, phase: np.ndarray, phases: int) -> np.ndarray:
    """Speed in ``phase`` relative to the nominal speed of a job that speeds up by ``growth`` at
    each of ``phases`` equal parts of its work, normalised so that alone it still runs for
    exactly its duration (``g**p / mean_q g**-q``)."""
    g = np.asarray(growth, dtype=np.float64)
    q = np.arange(phases)
    norm = (g[..., None] ** -q).mean(axis=-1)
    return g ** np.minimum(np.asarray(phase), phases - 1) * norm


class RatesMixin:
    """The speed model (:meth:`rate_of`), per-slot rates with goodput and growth, and phases."""

    def min_nodes(self, n: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Fewest nodes of type ``t`` that hold ``n`` GPUs."""
        return -(-n // self.max_node[t])

    def rate_of(self, model: np.ndarray, gpus: np.ndarray, n: np.ndarray, t: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Progress rate (reference-seconds per second) of jobs given ``n`` GPUs of type ``t`` on
        ``nodes`` nodes (all arrays broadcast together)."""
        n_safe = np.maximum(n, 1)
        rate = self.speed[model, t] * (n_safe / gpus) ** self.scaling[model]
        spread = nodes > self.min_nodes(n_safe, t)
        rate = np.where(spread, rate * self.locality[model], rate)
        return np.where(n > 0, rate, 0.0)

    def set_goodput(self, table: GoodputTable) -> None:
        """Use ``table`` for the rates of goodput jobs (its GPU types must be the cluster's)."""
        if tuple(table.gpu_types) != self.gpu_types:
            raise ValueError(f"goodput table is for GPU types {table.gpu_types}, the cluster has {self.gpu_types}")
        if self.goodput is not None and self.goodput is not table:
            if (self.j_kind >= 0).any() and self.goodput.kinds != table.kinds:
                raise ValueError("a core holds one goodput table; these workloads bring different ones")
        self.goodput = table

    def slot_rate(self, n: np.ndarray, t: np.ndarray, nodes: np.ndarray, adaptive: np.ndarray | None = None,
                  where: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Rate of the job in each slot on ``n`` GPUs of type ``t`` on ``nodes`` nodes (arrays
        ``(E, S)``, or 1-D for the slots ``where = (e, s)``), at a fixed batch size or, where
        ``adaptive``, the goodput-optimal one (goodput jobs only)."""
        idx = (slice(None), slice(None)) if where is None else where
        rate = self.rate_of(self.s_model[idx], self.s_gpus[idx], n, t, nodes)
        g = self.s_growth[idx]
        if (g != 1.0).any():
            rate = rate * self.growth_multiplier(g, self.s_phase[idx])
        if self.goodput is None:
            return rate
        kind = self.s_kind[idx]
        gp = kind >= 0
        if not gp.any():
            return rate
        g = self.goodput
        adaptive = np.zeros(kind.shape, dtype=bool) if adaptive is None else np.broadcast_to(adaptive, kind.shape)
        k = np.maximum(kind, 0)
        n_ = np.clip(n, 0, g.max_gpus)
        r = g.rate[k, self.s_phase[idx], np.clip(t, 0, self.T - 1), n_, (nodes > 1).astype(np.int64),
                   adaptive.astype(np.int64)] * self.s_unit[idx]
        return np.where(gp, np.where(n > 0, r, 0.0), rate)

    def growth_multiplier(self, growth: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """:func:`growth_multiplier` with the core's ``dynamic_phases``."""
        return growth_multiplier(growth, phase, self.dynamic_phases)

    def _next_phase(self, e: np.ndarray, s: np.ndarray) -> None:
        """Jobs that reached the end of their phase enter the next one (new rate)."""
        self.s_done[e, s] = self.s_phase_end[e, s]
        self.s_phase[e, s] += 1
        self._set_phase_end(e, s)
        self._set_base(e, s)

    def _set_base(self, e: np.ndarray, s: np.ndarray) -> None:
        """Recompute the own rate of running jobs (speed model, goodput, adaptation, CPUs)."""
        r = self.slot_rate(self.s_n[e, s], self.s_t[e, s], self.s_nodes[e, s], self.s_adapt[e, s], (e, s))
        if self.resources:
            r = r * self._cpu_relative(e, s)
        self.s_base[e, s] = r
        self.s_rate[e, s] = r
        if self.coupled:
            self._dirty[e] = True

    def _set_phase_end(self, e: np.ndarray, s: np.ndarray) -> None:
        """Where the current phase of each job ends: a goodput phase bound, the next
        dynamic-adaptation part, or never."""
        k = self.s_kind[e, s]
        gp = k >= 0
        P = self.dynamic_phases
        ph = self.s_phase[e, s]
        dyn = (self.s_growth[e, s] != 1.0) & (ph < P - 1)
        end = np.where(dyn, (ph + 1) / P * self.s_work[e, s], INF)
        if gp.any() and self.goodput is not None:
            b = self.goodput.bounds
            p = np.minimum(self.s_phase[e, s], b.shape[1] - 1)
            frac = b[np.maximum(k, 0), p]
            end = np.where(gp, np.where(frac >= 1.0 - 1e-12, INF, frac * self.s_work[e, s]), end)
        self.s_phase_end[e, s] = end

    def _kind_total(self, kind: np.ndarray) -> np.ndarray:
        if self.goodput is None:
            return np.ones(len(kind))
        return self.goodput.total[np.maximum(kind, 0)]
