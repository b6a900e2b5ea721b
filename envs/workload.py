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

import numpy as np
import pandas as pd

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

    @property
    def num_jobs(self) -> int:
        return len(self.submit)

    @property
    def elastic(self) -> np.ndarray:
        return (self.min_gpus != self.gpus) | (self.max_gpus != self.gpus)


def make_workload(
    trace: pd.DataFrame,
    cluster: ClusterSpec,
    *,
    seed: int = 0,
    elastic_fraction: float = 0.0,
    source: str = "trace",
) -> Workload:
    """Turn a canonical job table into a :class:`Workload` for ``cluster``.

    Jobs without a model get one by seeded draw (:func:`traces.models.with_models`). With
    ``elastic_fraction`` > 0 that fraction of multi-GPU-capable jobs (seeded draw) become elastic
    with bounds ``[1, 2 * requested]`` (capped at the largest GPU type pool). Raises
    ``ValueError`` if a job needs more GPUs than any single GPU type of the cluster offers.
    """
    if not 0.0 <= elastic_fraction <= 1.0:
        raise ValueError(f"elastic_fraction must be in [0, 1], got {elastic_fraction}")
    trace = models.with_models(validate(trace, source), seed=seed)
    gpus = trace["num_gpus"].to_numpy(np.int64)
    biggest_pool = max(cluster.gpus_per_type().values())
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
    return Workload(
        job_id=trace["job_id"].to_numpy(object),
        submit=trace["submit_time"].to_numpy(np.float64),
        work=trace["duration"].to_numpy(np.float64),
        gpus=gpus,
        model=model,
        min_gpus=min_g,
        max_gpus=max_g,
    )
