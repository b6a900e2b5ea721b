"""Classic GPU-cluster schedulers as policies (DESIGN section 7).

Each scheduler is a :class:`envs.policy.Policy` (subclass of :class:`baselines.base.Baseline`)
in its own module, whose docstring gives the paper, what it models, what it simplifies and its
knobs. The same object runs in both places:

- whole-trace replay: ``envs.simulate(trace, cluster, baselines.get("tiresias"))``;
- the Gymnasium env, single or vectorised, any action mode:
  ``env.step(baselines.act(policy, env))`` (see :mod:`baselines.adapter`).

``get(name, **knobs)`` builds one, ``names()`` lists them:

========== ============================================================ =========== ==========
name       rule                                                         durations   preempts
========== ============================================================ =========== ==========
fifo       YARN-CS FIFO, strict head-of-line                            no          never
fjf        FIFO order, skipping jobs that do not fit (Tiresias' fjf)    no          never
sjf        shortest known duration first, backfilling                   oracle      never
srtf       shortest remaining time first                                oracle      every event
las        least attained GPU-service first                             no          rounds
tiresias   discretised 2D-LAS, starvation promotion, skew consolidation no          every event
gandiva    round-robin time-slicing of gangs when over-subscribed       no          quanta
optimus    marginal-gain elastic allocation from a fitted speed model   oracle      intervals
themis     finish-time fairness, worst rho first, leases                oracle      leases
========== ============================================================ =========== ==========
"""

from __future__ import annotations

from baselines.adapter import act, engine_of
from baselines.base import Baseline, JobTable, greedy_allocation
from baselines.fifo import FIFO, FJF
from baselines.gandiva import Gandiva
from baselines.las import LAS
from baselines.optimus import Optimus
from baselines.sjf import SJF
from baselines.srtf import SRTF
from baselines.themis import Themis
from baselines.tiresias import Tiresias

REGISTRY: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (FIFO, FJF, SJF, SRTF, LAS, Tiresias, Gandiva, Optimus, Themis)
}


def names() -> list[str]:
    """Every registered baseline name."""
    return list(REGISTRY)


def get(name: str, **knobs) -> Baseline:
    """A fresh instance of the baseline ``name`` with the given knobs (the module's defaults
    otherwise). ``ValueError`` for an unknown name, ``TypeError`` for an unknown knob."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; baselines are {names()}") from None
    return cls(**knobs)


__all__ = [
    "FIFO", "FJF", "LAS", "REGISTRY", "SJF", "SRTF", "Baseline", "Gandiva", "JobTable", "Optimus",
    "Themis", "Tiresias", "act", "engine_of", "get", "greedy_allocation", "names",
]
