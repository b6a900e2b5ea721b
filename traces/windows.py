"""Windows of a trace: the jobs an RL episode or a benchmark run replays, and offered load.

A window is addressed by its arguments alone (``trace, start, num_jobs | span, load, cluster``):
:func:`window` is a pure function, so the same arguments always give the same job table, which
keeps leaderboard runs reproducible.

Offered load
------------
The offered load of a trace on a cluster of ``G`` GPUs is the GPU demand arriving per unit time
divided by the GPUs available::

    offered_load = mean_j(duration_j * num_gpus_j) / (G * mean_interarrival)
    mean_interarrival = (last submit - first submit) / (n - 1)

i.e. the long-run fraction of the cluster's GPU-seconds the jobs ask for (1.0 = the cluster is
exactly saturated if every job ran at its requested size with no fragmentation). Durations are
the trace's run times at the original allocation, so no throughput model enters it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from traces import clusters as _clusters
from traces.schema import validate


def cluster_gpus(cluster) -> int:
    """GPUs in ``cluster``: a :class:`~traces.clusters.ClusterSpec`, a preset name or an int."""
    if isinstance(cluster, _clusters.ClusterSpec):
        return cluster.num_gpus
    if isinstance(cluster, str):
        return _clusters.get(cluster).num_gpus
    if isinstance(cluster, numbers.Integral) and not isinstance(cluster, bool):
        if cluster < 1:
            raise ValueError(f"cluster: expected at least 1 GPU, got {cluster}")
        return int(cluster)
    raise ValueError(
        f"cluster: expected a ClusterSpec, a preset name or a number of GPUs, got {cluster!r}"
    )


def cluster_label(cluster) -> str | int:
    """A short record of ``cluster`` for ``attrs``: the spec or preset name, or the GPU count."""
    if isinstance(cluster, _clusters.ClusterSpec):
        return cluster.name
    if isinstance(cluster, str):
        return cluster
    return int(cluster)


def _raw_load(submit: np.ndarray, gpu_seconds: np.ndarray, gpus: int) -> float:
    n = len(submit)
    if n < 2:
        raise ValueError(f"offered load needs at least 2 jobs (an inter-arrival time), got {n}")
    spread = float(submit.max() - submit.min())
    demand = float(gpu_seconds.mean())
    if spread <= 0:
        return math.inf
    return demand / (gpus * (spread / (n - 1)))


def offered_load(trace: pd.DataFrame, cluster) -> float:
    """Offered load of ``trace`` on ``cluster`` (see the module docstring for the formula).

    ``cluster`` is a :class:`~traces.clusters.ClusterSpec`, a preset name or a number of GPUs.
    ``ValueError`` for fewer than 2 jobs; ``inf`` when every job is submitted at the same time.
    """
    gpus = cluster_gpus(cluster)
    submit = trace["submit_time"].to_numpy(dtype=np.float64)
    gpu_seconds = trace["duration"].to_numpy(dtype=np.float64) * trace["num_gpus"].to_numpy(
        dtype=np.float64
    )
    return _raw_load(submit, gpu_seconds, gpus)


def _check_positive(name: str, value, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not (v > 0) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name}: expected a {'' if allow_inf else 'finite '}number > 0, got {value!r}")
    return v


def window(
    trace: pd.DataFrame,
    start: float = 0.0,
    num_jobs: int | None = None,
    span: float | None = None,
    load: float | None = None,
    cluster=None,
) -> pd.DataFrame:
    """The jobs of ``trace`` submitted at or after ``start``, re-based so the first submits at 0.

    ``trace`` is a canonical job table (sorted by submit time, as :func:`traces.schema.validate`
    returns it); ``start`` is in seconds on the trace's ``submit_time`` axis. Give exactly one of

    - ``num_jobs``: the next ``num_jobs`` jobs (``ValueError`` if fewer remain), or
    - ``span``: every job with ``start <= submit_time < start + span`` (``span`` may be ``inf``).

    With ``load``, all submit times (hence all inter-arrival times) are multiplied by one factor
    so that ``offered_load(result, cluster) == load``; ``cluster`` is then required (a
    ClusterSpec, preset name or GPU count). Durations and GPU counts are never changed.

    ``ValueError`` for bad arguments, a ``start`` beyond the last submit, an empty window, or a
    load target on a window with fewer than 2 jobs or all jobs submitted at once.

    The result passes :func:`traces.schema.validate`, keeps ``trace.attrs`` and records
    ``attrs['window']``: the arguments, ``offset`` (the original submit time of the first job,
    subtracted from all) and ``scale`` (the factor applied to the re-based submit times; 1.0
    without ``load``).
    """
    if (num_jobs is None) == (span is None):
        raise ValueError("window: give exactly one of num_jobs (a job count) or span (seconds)")
    if isinstance(start, bool) or not isinstance(start, numbers.Real) or not math.isfinite(start):
        raise ValueError(f"window: start must be a finite number of seconds, got {start!r}")
    start = float(start)
    if start < 0:
        raise ValueError(f"window: start must be >= 0 seconds, got {start}")
    if num_jobs is not None and (
        isinstance(num_jobs, bool) or not isinstance(num_jobs, numbers.Integral) or num_jobs < 1
    ):
        raise ValueError(f"window: num_jobs must be an integer >= 1, got {num_jobs!r}")
    if span is not None:
        span = _check_positive("window: span", span, allow_inf=True)
    gpus = None
    if load is not None:
        load = _check_positive("window: load", load)
        if cluster is None:
            raise ValueError("window: a load target needs a cluster (ClusterSpec, preset name or GPU count)")
        gpus = cluster_gpus(cluster)
    elif cluster is not None:
        cluster_gpus(cluster)  # validate it even if unused

    submit = trace["submit_time"].to_numpy(dtype=np.float64)
    if len(submit) == 0:
        raise ValueError("window: the trace has no jobs")
    if (np.diff(submit) < 0).any():
        raise ValueError("window: trace is not sorted by submit_time; pass it through traces.schema.validate")
    last = float(submit[-1])
    if start > last:
        raise ValueError(f"window: start {start} s is beyond the trace (last submit at {last} s)")

    first = int(np.searchsorted(submit, start, side="left"))
    if num_jobs is not None:
        available = len(submit) - first
        if num_jobs > available:
            raise ValueError(
                f"window: asked for {num_jobs} jobs from start {start} s but only {available} remain"
            )
        stop = first + int(num_jobs)
    else:
        stop = int(np.searchsorted(submit, start + span, side="left"))
        if stop <= first:
            raise ValueError(f"window: no job submitted in [{start}, {start + span}) s")

    out = trace.iloc[first:stop].copy()
    offset = float(submit[first])
    rebased = submit[first:stop] - offset
    scale = 1.0
    if load is not None:
        gpu_seconds = out["duration"].to_numpy(dtype=np.float64) * out["num_gpus"].to_numpy(
            dtype=np.float64
        )
        count = stop - first
        if count < 2:
            raise ValueError(f"window: cannot rescale to load {load}: the window has 1 job (no inter-arrival time)")
        spread = float(rebased[-1])
        if spread <= 0:
            raise ValueError(
                f"window: cannot rescale to load {load}: all {count} jobs are submitted at once"
            )
        # Target first-to-last spread: mean gap = mean GPU-seconds / (GPUs * load). Scaling the
        # normalised times (not multiplying by ``scale``) avoids overflow for tiny spreads.
        target = float(gpu_seconds.mean()) / (gpus * load) * (count - 1)
        scale = target / spread
        rebased = rebased / spread * target
    out["submit_time"] = rebased
    out.attrs = dict(trace.attrs)
    out.attrs["window"] = {
        "start": start,
        "num_jobs": None if num_jobs is None else int(num_jobs),
        "span": span,
        "load": load,
        "cluster": None if cluster is None else cluster_label(cluster),
        "offset": offset,
        "scale": scale,
    }
    return validate(out, source="window", sort=False)
