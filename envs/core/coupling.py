"""Coupling between jobs: GPU sharing (Gavel's pairwise speeds) and contention on shared
network links (CASSINI). The network formula is a plain function that policies import."""

from __future__ import annotations

import numpy as np

from envs.core.state import RUNNING


def link_loads(on: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``(E, N)`` total communication fraction on each node's link, from ``on`` (``(E, S, N)``,
    spanning job ``s`` uses node ``n``'s link) and ``phi`` (``(E, S)``)."""
    return np.einsum("es,esn->en", phi, on.astype(np.float64))


def iteration_factor(on: np.ndarray, phi: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``(E, S)`` iteration time of each spanning job relative to its time alone on its nodes
    (1 for jobs not spanning). ``on`` (``(E, S, N)``): spanning job ``s`` uses node ``n``'s
    link; ``phi``: its communication fraction; ``shift``: its communication is time-shifted.

    On a link whose spanning jobs' fractions sum to ``L`` a job's communication takes ``max(1,
    L)`` times longer when every job there is shifted to interleave, ``1 + L - phi`` otherwise
    (phases fall at random); the job's iteration takes ``(1 - phi) + phi * s`` with ``s`` the
    factor of its worst link."""
    span = on.any(axis=2)
    load = link_loads(on, phi)
    unshifted = np.einsum("es,esn->en", (span & ~shift & (phi > 0)).astype(np.float64), on.astype(np.float64))
    slow = np.where(unshifted[:, None, :] == 0, np.maximum(1.0, load[:, None, :]),
                    1.0 + load[:, None, :] - phi[:, :, None])
    worst = np.where(on, slow, 1.0).max(axis=2, initial=1.0)
    return np.where(span, (1.0 - phi) + phi * worst, 1.0)


class CouplingMixin:
    """Rates that depend on other jobs: refreshed for the envs whose allocations changed."""

    def refresh(self) -> None:
        """Bring ``s_rate`` up to date with the coupling between jobs (done before every event)."""
        if self.coupled:
            self._refresh()

    def _refresh(self) -> None:
        """Apply the coupling between jobs (shared GPUs, shared network links) to the rates of
        the envs whose allocations changed since the last refresh."""
        d = np.flatnonzero(self._dirty)
        if len(d) == 0:
            return
        self._dirty[d] = False
        self._cache = None
        run = self.s_status[d] == RUNNING
        model = self.s_model[d]
        factor = np.ones(run.shape)
        part = self.s_partner[d]
        has = run & (part >= 0)
        if has.any():
            pm = np.take_along_axis(model, np.maximum(part, 0), axis=1)
            pr = np.take_along_axis(self.s_status[d], np.maximum(part, 0), axis=1) == RUNNING
            factor = np.where(has & pr, self.sharing[model, pm], factor)
        if self.network:
            multi = run & (self.s_nodes[d] > 1) & ~self.s_guest[d]
            phi = np.where(multi, self.comm[model], 0.0)
            on = (self.s_place[d] > 0) & multi[:, :, None]
            factor = factor / iteration_factor(on, phi, self.s_shift[d])
        self.s_rate[d] = np.where(run, self.s_base[d] * factor, self.s_rate[d])
