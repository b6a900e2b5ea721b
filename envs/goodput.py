"""Goodput-modelled jobs: progress rates from Pollux's throughput and statistical-efficiency models.

A *goodput job* (Pollux, OSDI'21) makes statistical progress, not plain seconds of work: its
rate on an allocation is ``goodput = throughput x efficiency``, where throughput (samples/s)
follows the measured step and sync times of its application (:class:`traces.pollux.ThroughputModel`
fitted to ``placements.csv``/``scalability.csv``) and efficiency follows the gradient statistics
of the current epoch (:func:`traces.pollux.epoch_gains`), which change as training advances.

The simulation core looks rates up in a :class:`GoodputTable` built once per cluster, indexed by

    (kind, phase, GPU type, GPU count, spans nodes?, adaptive batch?)

- **kind**: an (application, batch size) pair; the batch size is the job's own (the "tuned"
  size of the Pollux workloads), used when the batch is fixed;
- **phase**: training is cut into up to ``phases`` consecutive groups of epochs; within one the
  rate is constant (the exact time-weighted mean over its epochs: the phase's progress over the
  sum of each epoch's progress / rate), and the core changes the rate when a job crosses into
  the next phase (an event, like a completion), so that efficiency, and the best batch size,
  evolve during training;
- **adaptive**: ``False`` runs the job at its own batch size, split over its GPUs as the Pollux
  artifact does (per-GPU batch rounded up, gradient accumulation above the largest per-GPU batch);
  ``True`` runs it at the batch size that maximises goodput on that allocation in that phase
  (Pollux's per-job optimisation: 50 sizes geometrically spaced from ``max(M0, n x min per-GPU
  batch)`` to the largest validated batch, accumulation steps when the per-GPU batch is too
  large, at least one on a single GPU above ``M0``, as the artifact does). Changing it costs no
  restart (an adaptdl job changes its batch size in place).

GPU types: the measurements were taken on T4 GPUs. On another type the compute part of every
step is divided by the ratio of Gavel's measured speeds of the application's model family
(:data:`traces.pollux.APPLICATION_MODELS`, :mod:`traces.models`) between that type and the T4,
and synchronisation (network-bound) is unchanged: a simplification, Sia profiles each type.

Units: table rates are statistical progress (iterations at the initial batch size) per second;
the core multiplies them by ``work / total progress`` of each job, so that a goodput job's work,
progress and rate are in reference-seconds like every other job's: its work is its run time
alone at its requested GPUs and batch size, consolidated, on the reference type (V100),
:func:`reference_time`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traces import models, pollux

#: Restart delay per application in Sia's simulator (``applications.py``; seconds). The Pollux
#: artifact charges 30 s to every application.
SIA_RESTART = {"cifar10": 50.0, "deepspeech2": 25.0, "bert": 120.0, "yolov3": 80.0, "imagenet": 250.0, "ncf": 15.0}
_CANDIDATES = 50
#: GPUs per node the reference run time assumes (the Pollux testbed).
_REFERENCE_NODE = pollux.GPUS_PER_NODE


@dataclass(frozen=True, eq=False)
class GoodputTable:
    """Progress rates of goodput job kinds on a cluster's GPU types (see the module docstring).

    ``rate`` and ``batch`` have shape ``(K, P, T, G + 1, 2, 2)`` (kind, phase, GPU type, GPU
    count 0..G, spans nodes, adaptive); ``batch`` is the total batch size in use. ``bounds``
    ``(K, P)`` is the cumulative fraction of a kind's total progress at the end of each phase
    (the last is 1; kinds with fewer phases repeat 1). ``max_replicas`` ``(K,)`` is Pollux's cap
    on a job's GPUs.
    """

    kinds: tuple[tuple[str, int], ...]
    gpu_types: tuple[str, ...]
    rate: np.ndarray
    batch: np.ndarray
    bounds: np.ndarray
    total: np.ndarray
    max_replicas: np.ndarray

    @property
    def max_gpus(self) -> int:
        return self.rate.shape[3] - 1

    def kind(self, application: str, batch_size: int) -> int:
        """Index of the kind ``(application, batch_size)``; ``KeyError`` if absent."""
        try:
            return self.kinds.index((application, int(batch_size)))
        except ValueError:
            raise KeyError(f"no goodput kind ({application!r}, {batch_size}) in this table") from None


def _phase_split(app: pollux.Application, phases: int) -> list[np.ndarray]:
    return [c for c in np.array_split(np.arange(app.epochs), min(phases, app.epochs)) if len(c)]


def _fixed_config(app: pollux.Application, n: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per GPU count: per-GPU micro-batch, accumulation steps and effective batch at a fixed
    total batch size (the artifact's rule, :meth:`traces.pollux.Application.configuration`)."""
    atomic = np.empty(len(n))
    accum = np.empty(len(n))
    for i, k in enumerate(n):
        _placement, a, s = app.configuration(int(k), int(batch_size))
        atomic[i], accum[i] = a, s
    return atomic, accum, n * atomic * (accum + 1)


def _adaptive_candidates(app: pollux.Application, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(G, C)`` per-GPU micro-batch, accumulation steps and total batch of the candidates."""
    lim = pollux.limits(app)
    m0, top = float(lim["init_batch_size"]), float(lim["max_batch_size"])
    lo = np.minimum(np.maximum(m0, lim["min_local_bsz"] * n), top)
    frac = np.linspace(0.0, 1.0, _CANDIDATES)[None, :]
    total = lo[:, None] * (top / lo[:, None]) ** frac
    local = total / n[:, None]
    accum = np.ceil(local / lim["max_local_bsz"] - 1e-9) - 1.0
    accum = np.where((n[:, None] == 1) & (total > m0), np.maximum(accum, 1.0), np.maximum(accum, 0.0))
    atomic = local / (accum + 1.0)
    return atomic, accum, total


def _kind_rates(app: pollux.Application, model: pollux.ThroughputModel, batch_size: int | None,
                ratio: np.ndarray, G: int, chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(P, T, G + 1, 2)`` rates and batch sizes of ``app`` at a fixed ``batch_size`` (or
    goodput-optimal when ``None``) for compute-speed ratios ``ratio`` ``(T,)``."""
    n = np.arange(1, G + 1, dtype=np.float64)
    need = pollux.progress_needed(app)
    if batch_size is None:
        atomic, accum, total = _adaptive_candidates(app, n)  # (G, C)
    else:
        atomic, accum, total = (a[:, None] for a in _fixed_config(app, n, batch_size))  # (G, 1)
    gains = pollux.epoch_gains(app, total)  # (E, G, C)
    phase_gain = np.stack([need[c].sum() / (need[c, None, None] / gains[c]).sum(axis=0) for c in chunks])  # (P, G, C)
    multi = np.array([False, True])
    t_iter = model.iteration_time(n[None, :, None, None], multi[None, None, :, None], atomic[None, :, None, :],
                                  accum[None, :, None, :], ratio[:, None, None, None])  # (T, G, 2, C)
    rate = phase_gain[:, None, :, None, :] / t_iter[None]  # (P, T, G, 2, C)
    best = rate.argmax(axis=-1)
    P, T = len(chunks), len(ratio)
    out_rate = np.zeros((P, T, G + 1, 2))
    out_batch = np.zeros((P, T, G + 1, 2))
    out_rate[:, :, 1:] = np.take_along_axis(rate, best[..., None], axis=-1)[..., 0]
    out_batch[:, :, 1:] = np.broadcast_to(total[None, None, :, None, :], rate.shape)[
        np.arange(P)[:, None, None, None], np.arange(T)[None, :, None, None],
        np.arange(G)[None, None, :, None], np.arange(2)[None, None, None, :], best]
    return out_rate, out_batch


def compute_ratio(application: str, gpu_types: tuple[str, ...]) -> np.ndarray:
    """``(T,)`` compute speed of each GPU type relative to the T4 the measurements come from."""
    model = models.model_index(pollux.APPLICATION_MODELS[application])
    speed = models.speed_matrix((*gpu_types, pollux.MEASURED_GPU))[model]
    return speed[:-1] / speed[-1]


def build_table(root: str | Path, kinds: list[tuple[str, int]], gpu_types: tuple[str, ...], *,
                max_gpus: int = 64, phases: int = 10) -> GoodputTable:
    """The :class:`GoodputTable` of ``kinds`` (``(application, batch size)`` pairs) for a cluster
    with ``gpu_types``, from the Pollux measurements under ``root`` (``.../reference/pollux``)."""
    if phases < 1:
        raise ValueError(f"phases must be >= 1, got {phases}")
    if max_gpus < 1:
        raise ValueError(f"max_gpus must be >= 1, got {max_gpus}")
    kinds = [(str(a), int(b)) for a, b in dict.fromkeys((str(a), int(b)) for a, b in kinds)]
    K, T, G = len(kinds), len(gpu_types), int(max_gpus)
    P = 1
    per_app: dict[str, tuple] = {}
    for name in {a for a, _ in kinds}:
        app = pollux.application(root, name)
        chunks = _phase_split(app, phases)
        P = max(P, len(chunks))
        need = pollux.progress_needed(app)
        bounds = np.cumsum([need[c].sum() for c in chunks]) / need.sum()
        model = app.throughput_model()
        ratio = compute_ratio(name, gpu_types)
        adaptive = _kind_rates(app, model, None, ratio, G, chunks)
        per_app[name] = (app, chunks, bounds, model, ratio, adaptive, float(need.sum()))
    rate = np.zeros((K, P, T, G + 1, 2, 2))
    batch = np.zeros((K, P, T, G + 1, 2, 2))
    bounds = np.ones((K, P))
    total = np.zeros(K)
    cap = np.zeros(K, dtype=np.int64)
    for k, (name, b) in enumerate(kinds):
        app, chunks, bnd, model, ratio, adaptive, tot = per_app[name]
        fixed = _kind_rates(app, model, b, ratio, G, chunks)
        p = len(chunks)
        for mode, (r, bs) in enumerate((fixed, adaptive)):
            rate[k, :p, ..., mode] = r
            batch[k, :p, ..., mode] = bs
            rate[k, p:, ..., mode] = r[-1]
            batch[k, p:, ..., mode] = bs[-1]
        bounds[k, :p] = bnd
        total[k] = tot
        cap[k] = pollux.limits(app)["max_replicas"]
    return GoodputTable(tuple(kinds), tuple(gpu_types), rate, batch, bounds, total, cap)


@functools.lru_cache(maxsize=64)
def goodput_table(root: str | Path, kinds: tuple[tuple[str, int], ...], gpu_types: tuple[str, ...], max_gpus: int,
                  phases: int = 10) -> GoodputTable:
    """:func:`build_table`, memoised (the windows of one trace share one table; its arrays are
    read-only)."""
    table = build_table(root, list(kinds), gpu_types, max_gpus=max_gpus, phases=phases)
    for value in vars(table).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return table


@functools.lru_cache(maxsize=4096)
def reference_time(root: str | Path, application: str, num_gpus: int, batch_size: int, *,
                   gpu_type: str = models.REFERENCE_GPU, phases: int = 10) -> float:
    """Seconds to train ``application`` alone on ``num_gpus`` GPUs of ``gpu_type`` packed on
    4-GPU nodes, at the fixed ``batch_size``: a goodput job's work in reference-seconds
    (memoised: a workload repeats a few applications and sizes)."""
    app = pollux.application(root, application)
    chunks = _phase_split(app, phases)
    need = pollux.progress_needed(app)
    r, _ = _kind_rates(app, app.throughput_model(), batch_size, compute_ratio(application, (gpu_type,)), num_gpus, chunks)
    rates = r[:, 0, num_gpus, int(num_gpus > _REFERENCE_NODE)]
    return float(sum(need[c].sum() / rp for c, rp in zip(chunks, rates, strict=True)))
