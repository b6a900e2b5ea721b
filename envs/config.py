"""The simulator's settings: one :class:`SimConfig`, passed whole to every layer that simulates.

:class:`envs.core.ClusterCore`, :func:`envs.simulate`, the Gymnasium envs (``EnvConfig.sim``) and
the leaderboard suites all take the same frozen value, so a setting is declared, documented,
defaulted and validated here only.

What the *scheduler* may see (``known_durations``) is not a simulator setting: it belongs to the
policy's view, and the leaderboard sets it per policy. Neither is the random seed.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs import placement


@dataclass(frozen=True)
class SimConfig:
    """How the simulated cluster behaves (models on or off, costs) and how workloads are shaped."""

    restart_overhead: float = 30.0
    """seconds a resumed or moved job holds its GPUs without making progress (a checkpoint
    restore); goodput jobs may bring their own per application (``restart``)"""
    round_length: float | None = None
    """seconds between round boundaries (events at which policies re-decide); ``None``: in a
    replay, the policy's own ``round_length``; in a bare core, no rounds"""
    placer: str | placement.Placer = "consolidate"
    """how a gang is laid out on nodes: a name in :data:`envs.placement.PLACERS` or a callable"""
    resources: bool = False
    """model CPUs and memory per node (Synergy): jobs get CPUs and memory per GPU on their nodes
    and their speed scales with :func:`traces.models.cpu_factor`"""
    network: bool = False
    """model contention on node uplinks (CASSINI): a job spanning nodes slows down with the
    communication of the other spanning jobs on its links"""
    dynamic_phases: int = 4
    """equal parts of a dynamically adapting job's work, each faster than the last (Shockwave)"""
    elastic_fraction: float = 0.0
    """fraction of multi-GPU-capable jobs made elastic, bounds ``[1, 2 * requested]`` (seeded
    draw; :func:`envs.workload.make_workload`)"""
    dynamic_fraction: float = 0.0
    """fraction of plain multi-GPU-capable jobs that grow their batch size during training
    (seeded draw; :func:`envs.workload.make_workload`)"""
    goodput: bool | None = None
    """run the jobs of Pollux workloads on the goodput model (:mod:`envs.goodput`); ``None``:
    whenever the trace records applications and batch sizes"""
    restart: Mapping[str, float] | None = None
    """restart overhead per application of goodput jobs (e.g. :data:`envs.goodput.SIA_RESTART`);
    other jobs pay ``restart_overhead``"""

    def __post_init__(self) -> None:
        ro = self.restart_overhead
        _check(isinstance(ro, numbers.Real) and math.isfinite(ro) and ro >= 0,
               f"restart_overhead must be a finite number >= 0 seconds, got {ro!r}")
        rl = self.round_length
        _check(rl is None or (isinstance(rl, numbers.Real) and math.isfinite(rl) and rl > 0),
               f"round_length must be > 0 seconds or None, got {rl!r}")
        _check(callable(self.placer) or self.placer in placement.PLACERS,
               f"unknown placer {self.placer!r}; placers are {sorted(placement.PLACERS)} (or a callable)")
        dp = self.dynamic_phases
        _check(isinstance(dp, numbers.Integral) and dp >= 1, f"dynamic_phases must be an integer >= 1, got {dp!r}")
        for name in ("elastic_fraction", "dynamic_fraction"):
            value = getattr(self, name)
            _check(isinstance(value, numbers.Real) and 0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value!r}")
        _check(self.goodput is None or isinstance(self.goodput, (bool, np.bool_)),
               f"goodput must be True, False or None, got {self.goodput!r}")
        _check(self.restart is None or isinstance(self.restart, Mapping),
               f"restart must map application names to seconds, got {self.restart!r}")
        normal = {"restart_overhead": float(ro), "round_length": None if rl is None else float(rl),
                  "dynamic_phases": int(dp), "resources": bool(self.resources), "network": bool(self.network),
                  "elastic_fraction": float(self.elastic_fraction), "dynamic_fraction": float(self.dynamic_fraction),
                  "goodput": None if self.goodput is None else bool(self.goodput),
                  "restart": None if self.restart is None else dict(self.restart)}
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> SimConfig:
        """A copy with ``changes`` (validated; an unknown name raises ``TypeError``)."""
        unknown = set(changes) - FIELDS
        if unknown:
            raise TypeError(f"unknown simulator settings {sorted(unknown)}; SimConfig has {sorted(FIELDS)}")
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def of(cls, sim: SimConfig | Mapping[str, Any] | None = None, **settings: Any) -> SimConfig:
        """``sim`` (a SimConfig, a mapping of its fields, or ``None`` for the defaults) with the
        flat ``settings`` folded in; what callers that still pass settings one by one use."""
        base = cls() if sim is None else sim if isinstance(sim, SimConfig) else cls().replace(**dict(sim))
        return base.replace(**settings)

    def asdict(self) -> dict[str, Any]:
        """The settings as a plain dict (``restart`` copied to a plain dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["restart"] is not None:
            out["restart"] = dict(out["restart"])
        return out


FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(SimConfig))
"""The names of :class:`SimConfig`'s settings."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
