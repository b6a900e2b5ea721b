"""GPU-cluster schedulers, classic and modern, as policies (DESIGN section 7).

Each scheduler is a :class:`envs.policy.Policy` (subclass of :class:`baselines.base.Baseline`)
in its own module, whose docstring gives the paper, what it models, what it simplifies and its
knobs. The same object runs in both places:

- whole-trace replay: ``envs.simulate(trace, cluster, baselines.get("tiresias"))``;
- the Gymnasium env, single or vectorised, any action mode:
  ``env.step(baselines.act(policy, env))`` (see :mod:`envs.adapter`).

``get(name, **knobs)`` builds one, ``names()`` lists them:

==================== ================================================================ ======== ===========
name                 rule                                                             durations preempts
==================== ================================================================ ======== ===========
fifo                 YARN-CS FIFO, strict head-of-line                                no       never
fjf                  FIFO order, skipping jobs that do not fit (Tiresias' fjf)        no       never
sjf                  shortest known duration first, backfilling                       oracle   never
srtf                 shortest remaining time first                                    oracle   every event
las                  least attained GPU-service first                                 no       rounds
tiresias             discretised 2D-LAS, starvation promotion, skew consolidation     no       every event
gandiva              round-robin time-slicing of gangs when over-subscribed           no       quanta
optimus              marginal-gain elastic allocation from a fitted speed model       oracle   intervals
themis               finish-time fairness, worst rho first, leases                    oracle   leases
gavel                heterogeneity-aware max-min fairness (LAS) LP, 360 s rounds      no       rounds
gavel_agnostic       Gavel's LAS with every throughput 1 (equal GPU-time)             no       rounds
gavel_ftf            Gavel's finish-time fairness LP (min max rho)                    oracle   rounds
gavel_makespan       Gavel's makespan LP (max min throughput / remaining)             oracle   rounds
pollux               goodput-optimal elastic allocation, adaptive batch sizes         no       rounds
sia                  heterogeneity-aware goodput ILP over (type, count) configs       no       rounds
lyra                 SJF base demands, then knapsack of extra workers (elastic)       oracle   on reclaim
heet                 priced (type, count) bundles, min-cost matching, trades          oracle   events
shockwave            window MILP: log progress, makespan term, finish-time fairness   oracle   rounds
synergy              LAS GPU admission; CPUs/memory by Synergy-TUNE                   no       rounds
synergy_greedy       LAS GPU admission; ideal CPUs/memory or skip the job             no       rounds
synergy_proportional LAS GPU admission; CPUs/memory in proportion to GPUs             no       rounds
lucid                non-preemptive GPU-time priority, packs well-sharing pairs       no       never
cassini              host's (Themis) jobs placed for compatible links, time shifts    host's   host's
==================== ================================================================ ======== ===========

Composition (:mod:`baselines.compose`, as Blox composes schedulers): ``get(name, admission=...,
placement=..., admission_knobs=..., placement_knobs=..., **knobs)`` puts an admission policy in
front of the scheduler ``name`` and a placement policy behind it (``compose`` does the same);
with neither given, ``get`` returns the plain scheduler.
"""

from __future__ import annotations

from baselines.base import Baseline, JobTable, greedy_allocation
from baselines.cassini import Cassini
from baselines.compose import ADMISSIONS, PLACEMENTS, Composed, compose
from baselines.fifo import FIFO, FJF
from baselines.gandiva import Gandiva
from baselines.gavel import Gavel, GavelAgnostic, GavelFTF, GavelMakespan
from baselines.heet import Heet
from baselines.las import LAS
from baselines.lucid import Lucid
from baselines.lyra import Lyra
from baselines.optimus import Optimus
from baselines.pollux import Pollux
from baselines.shockwave import Shockwave
from baselines.sia import Sia
from baselines.sjf import SJF
from baselines.srtf import SRTF
from baselines.synergy import Synergy, SynergyGreedy, SynergyProportional
from baselines.themis import Themis
from baselines.tiresias import Tiresias
from envs.adapter import act, engine_of

REGISTRY: dict[str, type[Baseline]] = {
    cls.name: cls
    for cls in (
        FIFO, FJF, SJF, SRTF, LAS, Tiresias, Gandiva, Optimus, Themis,
        Gavel, GavelAgnostic, GavelFTF, GavelMakespan, Pollux, Sia, Lyra, Heet,
        Shockwave, Synergy, SynergyGreedy, SynergyProportional, Lucid, Cassini,
    )
}


def names() -> list[str]:
    """Every registered baseline name."""
    return list(REGISTRY)


#: the knobs of :func:`get` that compose a scheduler with admission and placement policies
COMPOSE_KNOBS = ("admission", "admission_knobs", "placement", "placement_knobs")


def get(name: str, **knobs) -> Baseline:
    """A fresh instance of the baseline ``name`` with the given knobs (the module's defaults
    otherwise). ``ValueError`` for an unknown name, ``TypeError`` for an unknown knob.

    Any of :data:`COMPOSE_KNOBS` makes it a :class:`~baselines.compose.Composed` policy (the
    other knobs are the scheduler's): ``get("tiresias", placement="spread", admission="load")``."""
    if any(k in knobs for k in COMPOSE_KNOBS):
        parts = {k: knobs.pop(k) for k in COMPOSE_KNOBS if k in knobs}
        if name not in REGISTRY:
            raise ValueError(f"unknown baseline {name!r}; baselines are {names()}")
        return compose(name, scheduler_knobs=knobs, **parts)
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; baselines are {names()}") from None
    return cls(**knobs)


__all__ = [
    "ADMISSIONS",
    "COMPOSE_KNOBS",
    "FIFO",
    "FJF",
    "LAS",
    "PLACEMENTS",
    "REGISTRY",
    "SJF",
    "SRTF",
    "Baseline",
    "Cassini",
    "Composed",
    "Gandiva",
    "Gavel",
    "GavelAgnostic",
    "GavelFTF",
    "GavelMakespan",
    "Heet",
    "JobTable",
    "Lucid",
    "Lyra",
    "Optimus",
    "Pollux",
    "Shockwave",
    "Sia",
    "Synergy",
    "SynergyGreedy",
    "SynergyProportional",
    "Themis",
    "Tiresias",
    "act",
    "compose",
    "engine_of",
    "get",
    "greedy_allocation",
    "names",
]
