"""Workloads: a validated job table turned into the arrays the simulation core runs.

A trace job has only a duration. Its *work* is defined in reference-seconds: the time it needs
on the reference GPU type (V100) at its requested GPU count, consolidated. A job allocated
``n`` GPUs of type ``g`` progresses at

    rate = SPEED[model][g] * (n / requested) ** SCALING[model] * (LOCALITY[model] if spread else 1)

reference-seconds per second, so that replaying a trace with unlimited reference GPUs reproduces
every duration exactly (DESIGN section 3). ``spread`` means the gang sits on more nodes than
the fewest that could hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from envs.goodput import GoodputTable, goodput_table, reference_time
from traces import models
from traces.clusters import ClusterSpec
from traces.schema import validate


@dataclass(frozen=True)
class Workload:
    """The jobs of one episode or replay, in submit order (all arrays of length ``num_jobs``)."""

    job_id: np.ndarray  # object
    submit: np.ndarray  # float64 seconds
    work: np.ndarray  # float64 reference-seconds
    gpus: np.ndarray  # int64 requested GPUs
    model: np.ndarray  # int64 index into traces.models.MODELS
    min_gpus: np.ndarray  # int64; == gpus for rigid jobs
    max_gpus: np.ndarray  # int64; == gpus for rigid jobs
    kind: np.ndarray | None = None  # int64 goodput kind in ``goodput`` (-1: plain job); None: none
    restart: np.ndarray | None = None  # float64 restart overhead per job (NaN: the core's)
    goodput: GoodputTable | None = None
    growth: np.ndarray | None = None  # float64 speed-up per dynamic-adaptation phase (1: static)

    @property
    def num_jobs(self) -> int:
        return len(self.submit)

    @property
    def elastic(self) -> np.ndarray:
        return (self.min_gpus != self.gpus) | (self.max_gpus != self.gpus)


def drop_oversize(trace: pd.DataFrame, cluster: ClusterSpec, *, goodput: bool | None = None,
                  source: str = "trace") -> tuple[pd.DataFrame, int]:
    """``trace`` without the jobs that request more GPUs than the largest GPU-type pool of
    ``cluster`` (a gang runs on one GPU type, so such a job could never start), and how many
    were dropped. The simulator (:func:`envs.simulate`), the Gymnasium envs and ``train.py``
    all fit traces to their cluster here, before any load rescaling.

    Goodput workloads (``goodput``, default: whenever the trace records applications, as in
    :func:`make_workload`) are returned whole: :func:`make_workload` cuts their requests to the
    largest pool instead. Rows whose GPU count is not a number are kept for validation to
    report. ``ValueError`` if no job fits.
    """
    if goodput is None:
        goodput = "application" in trace.attrs.get("pollux", {})
    if goodput or "num_gpus" not in trace.columns:
        return trace, 0
    biggest_pool = max(cluster.gpus_per_type().values())
    too_big = (pd.to_numeric(trace["num_gpus"], errors="coerce") > biggest_pool).to_numpy()
    dropped = int(too_big.sum())
    if dropped == 0:
        return trace, 0
    if dropped == len(trace):
        raise ValueError(f"{source}: all {dropped} jobs request more GPUs than the largest GPU pool of cluster "
                         f"{cluster.name!r} ({biggest_pool}); a gang runs on one GPU type")
    kept = trace[~too_big].reset_index(drop=True)
    kept.attrs = dict(trace.attrs)
    return kept, dropped


def make_workload(
    trace: pd.DataFrame,
    cluster: ClusterSpec,
    *,
    seed: int = 0,
    elastic_fraction: float = 0.0,
    source: str = "trace",
    goodput: bool | None = None,
    phases: int = 10,
    restart: dict[str, float] | None = None,
    dynamic_fraction: float = 0.0,
    growth: tuple[float, float] = (1.2, 1.6),
) -> Workload:
    """Turn a canonical job table into a :class:`Workload` for ``cluster``.

    Jobs without a model get one by seeded draw (:func:`traces.models.with_models`). With
    ``elastic_fraction`` > 0 that fraction of multi-GPU-capable jobs (seeded draw) become elastic
    with bounds ``[1, 2 * requested]`` (capped at the largest GPU type pool). Raises
    ``ValueError`` if a job needs more GPUs than any single GPU type of the cluster offers
    (:func:`drop_oversize` removes such jobs first).

    Goodput jobs: a trace from :func:`traces.pollux.load_workload` records each job's
    application and batch size (``trace.attrs['pollux']``). With ``goodput`` (default: whenever
    the trace has them) those jobs run on Pollux's goodput model (:mod:`envs.goodput`, ``phases``
    efficiency phases): their work becomes their run time alone at their requested GPUs and batch
    size on the reference type (:func:`envs.goodput.reference_time`), and their bounds
    ``[1, max_replicas]`` (Pollux's cap), so that elastic policies may resize any of them; a
    request larger than the cluster's largest GPU-type pool is cut to that pool.
    ``restart`` maps an application to its restart overhead (e.g. Sia's
    :data:`envs.goodput.SIA_RESTART`); others use the core's.

    Dynamic adaptation (Shockwave): with ``dynamic_fraction`` > 0 that fraction of the plain
    multi-GPU-capable jobs (seeded draw) grow their batch size during training, as Accordion or
    gradient-noise-scale schedules do: at each of the core's ``dynamic_phases`` equal parts of
    their work they speed up by a factor drawn uniformly from ``growth`` (per job), their
    duration alone staying that of the trace (:func:`envs.core.rates.growth_multiplier`).
    """
    if not 0.0 <= elastic_fraction <= 1.0:
        raise ValueError(f"elastic_fraction must be in [0, 1], got {elastic_fraction}")
    if not 0.0 <= dynamic_fraction <= 1.0:
        raise ValueError(f"dynamic_fraction must be in [0, 1], got {dynamic_fraction}")
    if not 1.0 <= growth[0] <= growth[1]:
        raise ValueError(f"growth must be a range (low, high) with 1 <= low <= high, got {growth}")
    trace = models.with_models(validate(trace, source), seed=seed)
    gpus = trace["num_gpus"].to_numpy(np.int64)
    biggest_pool = max(cluster.gpus_per_type().values())
    meta = trace.attrs.get("pollux", {})
    if goodput is None:
        goodput = "application" in meta
    if goodput:
        gpus = np.minimum(gpus, biggest_pool)  # elastic: a tuned size beyond one type's pool shrinks to it
    too_big = gpus > biggest_pool
    if too_big.any():
        i = int(np.flatnonzero(too_big)[0])
        raise ValueError(
            f"{source}, row {i}: job {trace['job_id'][i]!r} requests {gpus[i]} GPUs but the largest "
            f"GPU pool of cluster {cluster.name!r} has {biggest_pool}; a gang runs on one GPU type"
        )
    model = np.array([models.model_index(m) for m in trace["model"]], dtype=np.int64)
    min_g, max_g = gpus.copy(), gpus.copy()
    if elastic_fraction > 0:
        rng = np.random.default_rng([seed, 1])
        can_scale = models.scaling_vector()[model] > 0
        elastic = can_scale & (rng.random(len(gpus)) < elastic_fraction)
        min_g[elastic] = 1
        max_g[elastic] = np.minimum(2 * gpus[elastic], biggest_pool)
    work = trace["duration"].to_numpy(np.float64)
    kind = restart_arr = table = None
    if goodput:
        if "application" not in meta:
            raise ValueError(f"{source}: goodput jobs need a Pollux workload (traces.pollux.load_workload); "
                             "this trace records no application and batch size per job")
        ids = trace["job_id"].astype(str)
        apps = ids.map(meta["application"]).to_numpy(object)
        bsz = ids.map(meta["batch_size"]).to_numpy(np.int64)
        root = Path(meta["root"])
        # the kinds of every job the trace records, not only this window's: windows of one trace
        # then share one table, as a core that steps them together needs
        kinds = tuple(sorted({(str(meta["application"][name]), int(meta["batch_size"][name]))
                              for name in meta["application"]}))
        table = goodput_table(root, kinds, tuple(cluster.gpu_types), min(64, biggest_pool), phases)
        kind = np.array([table.kind(a, b) for a, b in zip(apps, bsz, strict=True)], dtype=np.int64)
        work = np.array([reference_time(root, a, int(n), int(b), phases=phases)
                         for a, n, b in zip(apps, gpus, bsz, strict=True)])
        min_g = np.ones_like(gpus)
        max_g = np.maximum(np.minimum(table.max_replicas[kind], biggest_pool), gpus)
        if restart:
            restart_arr = np.array([restart.get(a, np.nan) for a in apps], dtype=np.float64)
    growth_arr = None
    if dynamic_fraction > 0:
        rng = np.random.default_rng([seed, 2])
        adapts = (models.scaling_vector()[model] > 0) & (rng.random(len(gpus)) < dynamic_fraction)
        if kind is not None:
            adapts &= kind < 0
        growth_arr = np.where(adapts, rng.uniform(growth[0], growth[1], len(gpus)), 1.0)
    return Workload(
        job_id=trace["job_id"].to_numpy(object),
        submit=trace["submit_time"].to_numpy(np.float64),
        work=work,
        gpus=gpus,
        model=model,
        min_gpus=min_g,
        max_gpus=max_g,
        kind=kind,
        restart=restart_arr,
        goodput=table,
        growth=growth_arr,
    )
