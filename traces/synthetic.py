"""Synthetic job traces calibrated to Microsoft Philly: the embedded default workload.

:func:`synthetic` draws, from one seeded ``np.random.default_rng(seed)``:

- **GPU counts** from the Philly GPU-count histogram (:data:`PHILLY_GPU_COUNTS`, the figures of
  ``pollux_philly.csv.gz`` in ``../shared/traces/README.md``: 93.17% single-GPU), *conditioned*
  on ``n <= min(max_gpus, cluster GPUs)``: larger sizes are dropped and the remaining
  probabilities renormalised, so no job asks for more GPUs than the cluster has.
- **Durations** (seconds, independent of the GPU count) by inverse-CDF sampling of a piecewise
  log-linear interpolation of the Philly duration quantiles (:data:`PHILLY_DURATION_QUANTILES`):
  ``log(duration)`` is linear in the quantile level between the embedded points. The draw is
  conditioned on ``duration_range`` (uniforms drawn between the quantile levels of its ends, not
  clipped), so there is no pile-up at the bounds. With the default range (10 s to 30 days) the
  median is ~1,155 s and the mean ~13,120 s (Philly: 1,144 s and 13,136 s).
- **Arrivals** from a Poisson process: i.i.d. exponential inter-arrival times at the rate that
  gives offered load ``load`` in expectation, ``rate = load * G / E[num_gpus * duration]``
  (``G`` = cluster GPUs, the expectation from the distributions above). Heavy-tailed durations
  make the *sampled* mean GPU-seconds noisy (a few long jobs move it by several percent even at
  20k jobs), so all submit times are then multiplied by one factor so that
  :func:`traces.windows.offered_load` of the result equals ``load`` exactly. Scaling by one
  factor keeps the process Poisson-shaped (coefficient of variation of the gaps stays ~1). The
  factor is recorded as ``attrs['synthetic']['scale']``.
- **Model types** from :func:`traces.models.assign_models` (multi-GPU jobs only get models that
  scale), **users** from a pool of :data:`NUM_USERS` names with Zipf-like (1/rank) weights.

``job_id`` is ``syn-000000``, ``syn-000001``, ... in submit order; ``vc``, ``status`` and
``gpu_type`` are empty. A single-job trace is submitted at 0 and has no defined load.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from traces.models import assign_models
from traces.schema import validate
from traces.windows import cluster_gpus, cluster_label

#: Jobs per GPU count in ``pollux_philly.csv.gz`` (82,247 jobs; ../shared/traces/README.md).
PHILLY_GPU_COUNTS: dict[int, int] = {
    1: 76_627, 2: 1_818, 4: 1_870, 8: 1_643, 12: 7, 16: 199, 24: 7, 32: 67, 64: 6, 128: 3,
}

#: (quantile level, duration in seconds) of the ``duration`` column of
#: ``../shared/traces/philly/pollux_philly.csv.gz`` (82,247 jobs), computed once with
#: ``numpy.quantile`` (linear) and rounded to whole seconds; levels 0 and 1 are the min and max.
#: Levels are dense in the tail, which carries most of the GPU time.
PHILLY_DURATION_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.0, 1.0),
    (0.001, 5.0),
    (0.005, 12.0),
    (0.01, 17.0),
    (0.02, 25.0),
    (0.05, 48.0),
    (0.10, 61.0),
    (0.15, 68.0),
    (0.20, 75.0),
    (0.25, 115.0),
    (0.30, 209.0),
    (0.40, 599.0),
    (0.50, 1_144.0),
    (0.60, 1_821.0),
    (0.70, 2_549.0),
    (0.80, 4_244.0),
    (0.85, 5_903.0),
    (0.90, 11_265.0),
    (0.95, 43_646.0),
    (0.97, 92_036.0),
    (0.98, 147_809.0),
    (0.99, 254_758.0),
    (0.995, 430_369.0),
    (0.998, 782_954.0),
    (0.999, 1_186_277.0),
    (0.9995, 1_818_160.0),
    (0.9999, 2_714_562.0),
    (1.0, 4_628_226.0),
)

NUM_USERS = 20

_LEVELS = np.array([p for p, _ in PHILLY_DURATION_QUANTILES], dtype=np.float64)
_LOG_Q = np.log(np.array([q for _, q in PHILLY_DURATION_QUANTILES], dtype=np.float64))
_USERS = np.array([f"user-{i:02d}" for i in range(NUM_USERS)], dtype=object)
_USER_P = 1.0 / np.arange(1, NUM_USERS + 1)
_USER_P /= _USER_P.sum()


def gpu_count_distribution(cap: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes, probabilities)`` of the Philly GPU-count histogram conditioned on ``n <= cap``."""
    sizes = np.array([n for n in PHILLY_GPU_COUNTS if n <= cap], dtype=np.int64)
    counts = np.array([PHILLY_GPU_COUNTS[n] for n in sizes], dtype=np.float64)
    return sizes, counts / counts.sum()


def _duration_levels(duration_range: tuple[float, float]) -> tuple[float, float]:
    """Quantile levels of the two ends of ``duration_range`` (``ValueError`` if it is empty)."""
    try:
        lo, hi = (float(v) for v in duration_range)
    except (TypeError, ValueError):
        raise ValueError(f"duration_range: expected (low, high) seconds, got {duration_range!r}") from None
    if not (0 < lo < hi) or not math.isfinite(hi):
        raise ValueError(f"duration_range: expected 0 < low < high < inf seconds, got {duration_range!r}")
    u_lo, u_hi = np.interp(np.log([lo, hi]), _LOG_Q, _LEVELS)
    if not u_hi > u_lo:
        raise ValueError(
            f"duration_range {duration_range!r} does not overlap the Philly durations "
            f"({math.exp(_LOG_Q[0]):g} to {math.exp(_LOG_Q[-1]):g} s)"
        )
    return float(u_lo), float(u_hi)


def duration_mean(duration_range: tuple[float, float] = (10, 30 * 86400)) -> float:
    """Exact mean of the duration distribution :func:`synthetic` samples from on ``duration_range``.

    Between embedded points the quantile function is ``exp`` of a linear function, whose mean
    over a segment is the logarithmic mean of its end values.
    """
    u_lo, u_hi = _duration_levels(duration_range)
    inner = (_LEVELS > u_lo) & (_LEVELS < u_hi)
    u = np.concatenate(([u_lo], _LEVELS[inner], [u_hi]))
    lq = np.interp(u, _LEVELS, _LOG_Q)
    a, b = np.exp(lq[:-1]), np.exp(lq[1:])
    d = lq[1:] - lq[:-1]
    safe = np.where(d > 1e-12, d, 1.0)
    seg = np.where(d > 1e-12, (b - a) / safe, a)
    return float((seg * np.diff(u)).sum() / (u_hi - u_lo))


def synthetic(
    num_jobs: int = 1000,
    load: float = 0.8,
    cluster="small",
    seed: int = 0,
    *,
    max_gpus: int | None = None,
    duration_range: tuple[float, float] = (10, 30 * 86400),
) -> pd.DataFrame:
    """A seeded synthetic trace of ``num_jobs`` jobs at offered load ``load`` on ``cluster``.

    ``cluster`` is a :class:`~traces.clusters.ClusterSpec`, a preset name or a GPU count; it
    sets the GPU budget of the load and the largest job (with ``max_gpus``). See the module
    docstring for the distributions. Returns a canonical job table (validated) with
    ``attrs['synthetic']`` recording the arguments and the arrival scale factor. Same arguments,
    same frame; ``ValueError`` for ``num_jobs < 1``, ``load <= 0``, ``max_gpus < 1`` or a
    ``duration_range`` outside the Philly durations.
    """
    if isinstance(num_jobs, bool) or not isinstance(num_jobs, numbers.Integral) or num_jobs < 1:
        raise ValueError(f"synthetic: num_jobs must be an integer >= 1, got {num_jobs!r}")
    if isinstance(load, bool) or not isinstance(load, numbers.Real) or not (0 < load < math.inf):
        raise ValueError(f"synthetic: load must be a finite number > 0, got {load!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"synthetic: seed must be an integer, got {seed!r}")
    gpus_total = cluster_gpus(cluster)
    cap = gpus_total
    if max_gpus is not None:
        if isinstance(max_gpus, bool) or not isinstance(max_gpus, numbers.Integral) or max_gpus < 1:
            raise ValueError(f"synthetic: max_gpus must be an integer >= 1, got {max_gpus!r}")
        cap = min(cap, int(max_gpus))
    u_lo, u_hi = _duration_levels(duration_range)
    lo, hi = (float(v) for v in duration_range)
    n = int(num_jobs)
    load = float(load)

    rng = np.random.default_rng(seed)
    sizes, probs = gpu_count_distribution(cap)
    num_gpus = sizes[rng.choice(len(sizes), size=n, p=probs)]
    u = u_lo + (u_hi - u_lo) * rng.random(n)
    duration = np.clip(np.exp(np.interp(u, _LEVELS, _LOG_Q)), lo, hi)

    mean_gpu_seconds = float((sizes * probs).sum()) * duration_mean(duration_range)
    rate = load * gpus_total / mean_gpu_seconds
    gaps = rng.exponential(1.0 / rate, size=n - 1)
    submit = np.concatenate(([0.0], np.cumsum(gaps)))
    scale = 1.0
    if n >= 2:
        achieved = float((duration * num_gpus).mean()) / (gpus_total * submit[-1] / (n - 1))
        scale = achieved / load
        submit = submit * scale

    models = assign_models(num_gpus, rng)
    users = _USERS[rng.choice(NUM_USERS, size=n, p=_USER_P)]
    empty = np.full(n, "", dtype=object)
    df = pd.DataFrame({
        "job_id": np.array([f"syn-{i:06d}" for i in range(n)], dtype=object),
        "submit_time": submit,
        "duration": duration,
        "num_gpus": num_gpus,
        "user": users,
        "vc": empty,
        "status": empty,
        "gpu_type": empty,
        "model": models,
    })
    df.attrs["synthetic"] = {
        "num_jobs": n,
        "load": load,
        "cluster": cluster_label(cluster),
        "cluster_gpus": gpus_total,
        "seed": int(seed),
        "max_gpus": cap,
        "duration_range": (lo, hi),
        "scale": scale,
    }
    return validate(df, source="synthetic", sort=False)
