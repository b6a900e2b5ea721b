"""Shared machinery of the classic schedulers.

Every baseline subclasses :class:`Baseline`, itself an :class:`envs.policy.Policy`:

- :meth:`Baseline.plan` returns the policy's decision in its natural form: a
  :class:`~envs.policy.Priority` (a score per slot, served by the core's greedy gang allocator),
  an :class:`~envs.policy.Allocation` (GPUs per slot) or ``None`` (keep everything as it is).
  This is what the Gymnasium adapter (:func:`envs.adapter.act`) translates into actions.
- :meth:`Baseline.decide` (what :func:`envs.simulate` calls) returns the same decision, lowered
  when that is cheaper (:func:`envs.lowering.lower`): on a cluster with one GPU type a
  ``Priority`` is turned into the exact allocation the core's greedy would compute
  (:func:`greedy_allocation`, a few vectorised passes instead of one pass per started job), and
  ``None`` when that allocation changes nothing. The lowering is exact:
  :mod:`tests.test_baselines` checks it against :meth:`ClusterCore.greedy`.
- :meth:`Baseline.prepare` (called by every driver before a decision) builds the per-job state
  the first time the policy meets envs of a given shape.

The ranking helpers shared with the drivers (:func:`greedy_allocation`, :func:`take_in_order`,
:func:`serve_order`, :func:`lower`) live in :mod:`envs.lowering` and are re-exported here.

Per-job state that must survive between decisions (Tiresias' queues, Optimus' observations...)
lives in a :class:`JobTable`: arrays indexed by ``(env, job position in the env's workload)``
(``view.job``), grown on demand and cleared by :meth:`Baseline.reset` (all envs) and
:meth:`Baseline.reset_envs` (envs that start a new episode, called by the Gym adapter).

All arrays have the leading env axis; nothing loops over envs.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from envs.core import EMPTY, RUNNING, WAITING
from envs.lowering import NO_JOB as _NO_JOB
from envs.lowering import greedy_allocation, lower, rows, serve_order, take_in_order
from envs.policy import Allocation, ClusterView, Policy, Priority

__all__ = ["EMPTY", "RUNNING", "WAITING", "Baseline", "BaselineKnobs", "JobTable", "greedy_allocation", "lower", "order_scores", "rows",
           "serve_order", "settled", "take_in_order"]


class JobTable:
    """Per-job arrays ``(E, J)`` indexed by env and workload position (``view.job``).

    ``fields`` maps a name to ``(dtype, fill)``. ``seen`` marks jobs met before. Arrays grow
    (doubling) when a larger job position shows up; :meth:`reset_envs` refills rows.
    """

    def __init__(self, num_envs: int, fields: dict[str, tuple[type, object]]) -> None:
        self.E = int(num_envs)
        self.fields = {"seen": (bool, False), **fields}
        self.J = 0
        self.data: dict[str, np.ndarray] = {}
        self._grow(64)

    def _grow(self, J: int) -> None:
        for name, (dtype, fill) in self.fields.items():
            arr = np.full((self.E, J), fill, dtype=dtype)
            if name in self.data:
                arr[:, : self.J] = self.data[name]
            self.data[name] = arr
        self.J = J

    def ensure(self, view: ClusterView) -> None:
        need = int(view.job.max(initial=-1)) + 1
        if need > self.J:
            self._grow(max(need, 2 * self.J))

    def reset_envs(self, envs: np.ndarray) -> None:
        for name, (_dtype, fill) in self.fields.items():
            self.data[name][envs] = fill

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def gather(self, name: str, view: ClusterView) -> np.ndarray:
        """``(E, S)`` the field at each slot's job (row ``e``'s job 0 entry for empty slots)."""
        self.ensure(view)
        job = view.job
        return self.data[name][_rows(job.shape[0]), np.maximum(job, 0)]

    def scatter(self, name: str, view: ClusterView, values: np.ndarray, mask: np.ndarray) -> None:
        """Set the field of the jobs in the slots ``mask`` (``(E, S)``) to ``values`` (``(E, S)``)."""
        self.scatter_many(view, mask, {name: values})

    def gather_many(self, view: ClusterView, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """:meth:`gather` of several fields (one index computation)."""
        self.ensure(view)
        job = view.job
        idx = (_rows(job.shape[0]), np.maximum(job, 0))
        return tuple(self.data[name][idx] for name in names)

    def scatter_many(self, view: ClusterView, mask: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """:meth:`scatter` of several fields on the same slots (one index computation)."""
        self.ensure(view)
        job = view.job
        e, s = np.nonzero(mask & (job >= 0))
        if len(e):
            j = job[e, s]
            for name, v in values.items():
                v = np.asarray(v)
                self.data[name][e, j] = v if v.ndim == 0 else np.broadcast_to(v, job.shape)[e, s]


_rows = rows


@dataclass(frozen=True)
class BaselineKnobs:
    """A baseline's knobs: one documented field per knob (no knobs here).

    Each baseline subclasses it as its nested ``Knobs`` class (``@dataclass(frozen=True)``), one
    field per knob with its paper default, checks the values in ``__post_init__`` (``ValueError``
    naming the knob) and normalises them there with :meth:`_set`. A variant (``gavel_ftf``,
    ``synergy_greedy``...) subclasses its parent's ``Knobs`` and only changes defaults; a field
    the variant fixes is declared ``field(default=..., init=False)`` (not a knob of the variant).
    """

    def _set(self, **values: object) -> None:
        """Store normalised values (``float(x)``...) in the frozen fields, after validation."""
        for name, value in values.items():
            object.__setattr__(self, name, value)


class Baseline(Policy):
    """Base class of the baselines (see the module docstring).

    Subclasses set ``name``, ``needs_durations``, ``round_length``, optionally ``job_fields``
    (per-job state, see :class:`JobTable`) and ``env_fields`` (per-env state ``(E,)``), declare
    their knobs as a nested ``Knobs`` dataclass (:class:`BaselineKnobs`) and implement
    :meth:`plan`. ``fast=False`` disables the lowering of :meth:`decide`.

    The constructor takes the knobs by keyword, keeps them as ``self.config`` (a frozen
    ``Knobs``) and copies each one to an attribute of the same name; state derived from them is
    computed by :meth:`_derive`.
    """

    Knobs: ClassVar[type[BaselineKnobs]] = BaselineKnobs
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {}
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {}
    fast: bool = True

    def __init__(self, **knobs: object) -> None:
        valid = [f.name for f in fields(self.Knobs) if f.init]
        unknown = [k for k in knobs if k not in valid]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no knob {', '.join(map(repr, unknown))}; "
                            f"its knobs are {valid}")
        self.config = self.Knobs(**knobs)
        for f in fields(self.config):
            setattr(self, f.name, getattr(self.config, f.name))
        self.jobs: JobTable | None = None
        self.envs: dict[str, np.ndarray] = {}
        self._derive()

    def _derive(self) -> None:
        """Compute the state that follows from the knobs (called once by the constructor)."""

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        E = view.num_envs
        self.jobs = JobTable(E, self.job_fields)
        self.envs = {name: np.full(E, fill, dtype=dtype) for name, (dtype, fill) in self.env_fields.items()}

    def reset_envs(self, envs: np.ndarray) -> None:
        """Forget the state of the envs in the boolean mask ``envs`` (a new episode begins)."""
        if self.jobs is not None:
            self.jobs.reset_envs(envs)
        for name, (_dtype, fill) in self.env_fields.items():
            self.envs[name][envs] = fill

    def prepare(self, view: ClusterView) -> None:
        """Reset the policy if it has not met envs of this shape yet (state sized by ``num_envs``)."""
        if self.jobs is None or self.jobs.E != view.num_envs:
            self.reset(view)

    @abstractmethod
    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        """The decision in its natural form (see the module docstring)."""

    def decide(self, view: ClusterView) -> Priority | Allocation | None:
        """:meth:`plan`, lowered to its cheapest exact form (:func:`envs.lowering.lower`) unless
        ``fast`` is off. Calls :meth:`prepare` itself, so a bare ``decide`` is safe too."""
        self.prepare(view)
        decision = self.plan(view)
        return lower(view, decision) if self.fast else decision

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.knobs().items())
        return f"{type(self).__name__}({knobs})"

    def knobs(self) -> dict[str, object]:
        """The policy's knobs (constructor arguments) and their values: ``type(self)(**knobs())``
        rebuilds an equal policy."""
        return {f.name: getattr(self.config, f.name) for f in fields(self.config) if f.init}


# ---------------------------------------------------------------------------------- scoring
def settled(view: ClusterView) -> np.ndarray:
    """``(E,)`` envs where no job waits and every job is a rigid gang (``min_gpus == max_gpus``)
    that runs: an allocation policy that never drops a running rigid gang it can keep (Pollux,
    Sia) has nothing to change there, so it may skip the round's optimisation."""
    st = view.status
    return ~((st == WAITING) | ((st == RUNNING) & (view.min_gpus != view.max_gpus))).any(axis=1)


def order_scores(view: ClusterView, keys: list[np.ndarray], valid: np.ndarray) -> np.ndarray:
    """Scores (higher first) that serve the ``valid`` slots in ascending lexicographic order of
    ``keys`` (first key most significant), ties to the earlier job; ``-inf`` elsewhere.

    The scores are unique per env (a rank), so the order never depends on slot positions.
    """
    job = view.job
    E, S = job.shape
    rws = rows(E)
    order = np.argsort(np.where(valid, job, _NO_JOB), axis=1, kind="stable")
    for key in reversed(keys):
        k = np.where(valid, key, np.inf)[rws, order]
        order = order[rws, np.argsort(k, axis=1, kind="stable")]
    score = np.empty((E, S))
    score[rws, order] = np.arange(S, 0, -1, dtype=np.float64)
    return np.where(valid, score, -np.inf)
