"""The CPU and memory model (Synergy): grants per GPU on a job's nodes, top-ups when CPUs free
up, re-grants when an ask changes, and the speed a grant gives."""

from __future__ import annotations

import numpy as np

from envs.core.state import INF, RUNNING
from traces import models


class ResourcesMixin:
    """CPU and memory grants (active only with ``SimConfig.resources``)."""

    def _fair_share(self, take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CPUs and memory per GPU of a GPU-proportional share on the nodes of placements ``take``."""
        on = take > 0
        return (np.where(on, self.fair_cpu[None, :], INF).min(axis=1),
                np.where(on, self.fair_mem[None, :], INF).min(axis=1))

    def _cpu_relative(self, e: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Speed given the CPUs and memory a job holds, relative to a GPU-proportional share."""
        fc, fm = self._fair_share(self.s_place[e, s])
        m = self.s_model[e, s]
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = models.cpu_factor(m, self.s_cpu[e, s], self.s_mem[e, s]) / models.cpu_factor(m, fc, fm)
        # a job left without CPUs crawls (1%) rather than stalls, until CPUs free up (_top_up)
        return np.maximum(np.where(np.isfinite(rel), rel, 1.0), 0.01)

    def _grant(self, e: np.ndarray, s: np.ndarray) -> None:
        """Give started jobs the CPUs and memory they ask for per GPU (NaN: a GPU-proportional
        share), or what their nodes have left if less."""
        take = self.s_place[e, s].astype(np.float64)
        on = take > 0
        fc, fm = self._fair_share(take)
        for ask_name, free, fair, dst in (("s_cpu_ask", self.free_cpu, fc, self.s_cpu),
                                          ("s_mem_ask", self.free_mem, fm, self.s_mem)):
            ask = getattr(self, ask_name)[e, s]
            ask = np.where(np.isnan(ask), fair, ask)
            with np.errstate(divide="ignore", invalid="ignore"):
                avail = np.where(on, free[e] / np.where(on, take, 1.0), INF).min(axis=1)
            got = np.clip(np.minimum(ask, avail), 0.0, None)
            got = np.where(np.isfinite(got), got, 0.0)
            np.subtract.at(free, e, got[:, None] * take)
            dst[e, s] = got

    def _regrant(self, mask: np.ndarray) -> None:
        """Running jobs in ``mask`` whose CPU or memory ask changed are granted again in place, one
        per env at a time (each sees what the previous ones left): first those whose asks shrink,
        then the others, each group in workload order."""
        if not self.resources or not mask.any():
            return
        self._cache = None
        fc, fm = self._fair_share(self.s_place.reshape(-1, self.N))
        ask_c = np.where(np.isnan(self.s_cpu_ask), fc.reshape(self.E, self.S), self.s_cpu_ask)
        ask_m = np.where(np.isnan(self.s_mem_ask), fm.reshape(self.E, self.S), self.s_mem_ask)
        shrink = mask & (ask_c <= self.s_cpu + 1e-9) & (ask_m <= self.s_mem + 1e-9)
        for part in (shrink, mask & ~shrink):  # what shrinks first frees room for what grows
            for e, s in self._ranks(part):
                place = self.s_place[e, s]
                self.free_cpu[e] += place * self.s_cpu[e, s][:, None]
                self.free_mem[e] += place * self.s_mem[e, s][:, None]
                self._grant(e, s)
                self._set_base(e, s)

    def _top_up(self, envs: np.ndarray) -> None:
        """Running jobs holding fewer CPUs or less memory than they asked for (a GPU-proportional
        share by default) get what their nodes have free again, in workload order."""
        for name, ask_name, free, fair in (("s_cpu", "s_cpu_ask", self.free_cpu, self.fair_cpu),
                                           ("s_mem", "s_mem_ask", self.free_mem, self.fair_mem)):
            held = getattr(self, name)
            sub_run = (self.s_status[envs] == RUNNING) & (self.s_partner[envs] < 0)
            on = self.s_place[envs] > 0
            fair_s = np.where(on, fair[None, None, :], INF).min(axis=2)
            ask = getattr(self, ask_name)[envs]
            target = np.where(np.isnan(ask), fair_s, ask)
            short = sub_run & (held[envs] < target - 1e-9) & (free[envs] > 1e-9).any(axis=1)[:, None]
            if not short.any():
                continue
            ii, ss = np.nonzero(short)
            ee = envs[ii]
            order = np.argsort(self.s_job[ee, ss], kind="stable")
            for k in order:
                e1, s1 = ee[k], ss[k]
                take = self.s_place[e1, s1].astype(np.float64)
                nodes = take > 0
                avail = (free[e1, nodes] / take[nodes]).min()
                add = min(max(avail, 0.0), target[ii[k], s1] - held[e1, s1])
                if add > 1e-9:
                    free[e1] -= add * take
                    held[e1, s1] += add
                    self._set_base(np.array([e1]), np.array([s1]))
