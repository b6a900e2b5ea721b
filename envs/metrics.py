"""Per-job results and the scheduling metrics of DESIGN section 6.

- JCT = finish - submit: mean, median, p95, p99 (numpy linear percentiles).
- makespan = last finish - first submit.
- queueing delay = first start - submit (mean).
- slowdown = JCT / (run time alone on the requested GPUs of the reference type) (mean); run
  times below :data:`SLOWDOWN_MIN_DURATION` count as that floor (the slowdown reward too).
- utilisation = allocated GPU-seconds / (cluster GPUs x makespan); with unfinished jobs (a
  truncated episode) GPU-seconds run up to the clock, and the span is first submit to the clock.
- finish-time fairness (Themis) rho = JCT / T_id, where T_id is the job's run time on an
  exclusive 1/n share of the cluster, n the time-averaged number of jobs in the system over the
  job's lifetime (itself included): T_id = run time alone x max(1, n x requested GPUs / cluster
  GPUs), i.e. the job is slowed only when its 1/n share is smaller than its request. Reported as
  mean rho, max rho and the fraction of jobs with rho > 1 (Shockwave's unfair fraction).
- preemptions and restarts, in total and per job.

Metrics cover finished jobs; ``unfinished`` counts the others (a truncated episode).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: seconds: the least run time a job's slowdown is measured against (metric and reward), so that
#: slowdown stays finite for any positive duration
SLOWDOWN_MIN_DURATION = 1.0

RESULT_COLUMNS = (
    "job_id", "submit", "first_start", "finish", "num_gpus", "gpus_last", "duration", "jct",
    "queueing_delay", "slowdown", "rho", "preemptions", "restarts", "gpu_seconds",
)


def job_results(
    job_id: np.ndarray, submit: np.ndarray, first_start: np.ndarray, finish: np.ndarray,
    num_gpus: np.ndarray, gpus_last: np.ndarray, duration: np.ndarray, preemptions: np.ndarray,
    restarts: np.ndarray, gpu_seconds: np.ndarray, contention: np.ndarray, total_gpus: int,
) -> pd.DataFrame:
    """One row per job. ``contention`` is the integral of jobs-in-system over the job's life."""
    jct = finish - submit
    with np.errstate(invalid="ignore", divide="ignore"):
        n_avg = np.where(jct > 0, contention / jct, 1.0)
        ideal = duration * np.maximum(1.0, n_avg * num_gpus / total_gpus)
        rho = jct / ideal
    return pd.DataFrame({
        "job_id": job_id, "submit": submit, "first_start": first_start, "finish": finish,
        "num_gpus": num_gpus, "gpus_last": gpus_last, "duration": duration, "jct": jct,
        "queueing_delay": first_start - submit, "slowdown": jct / np.maximum(duration, SLOWDOWN_MIN_DURATION),
        "rho": rho,
        "preemptions": preemptions, "restarts": restarts, "gpu_seconds": gpu_seconds,
    })


def summarize(results: pd.DataFrame, total_gpus: int, end: float | None = None) -> dict[str, float]:
    """The metrics of a replay or episode from its :func:`job_results` table (``end``: see
    :func:`summarize_arrays`)."""
    col = lambda name: results[name].to_numpy(np.float64)  # noqa: E731
    return summarize_arrays(col("submit"), col("finish"), col("queueing_delay"), col("slowdown"),
                            col("rho"), col("gpu_seconds"), col("preemptions"), col("restarts"), total_gpus, end)


def summarize_arrays(
    submit: np.ndarray, finish: np.ndarray, queueing_delay: np.ndarray, slowdown: np.ndarray,
    rho: np.ndarray, gpu_seconds: np.ndarray, preemptions: np.ndarray, restarts: np.ndarray,
    total_gpus: int, end: float | None = None,
) -> dict[str, float]:
    """:func:`summarize` on plain arrays (one entry per job; ``finish`` NaN if unfinished).

    ``end``: the time up to which ``gpu_seconds`` were counted (the clock of a truncated
    episode, whose running jobs hold GPU time too); with unfinished jobs utilisation is taken
    over ``[first submit, end]`` so that its GPU time and its span cover the same time."""
    done = ~np.isnan(finish)
    out: dict[str, float] = {"jobs": float(len(submit)), "unfinished": float((~done).sum())}
    if not done.any():
        return out
    jct = finish[done] - submit[done]
    makespan = float(finish[done].max() - submit.min())
    span = makespan
    if end is not None and not done.all():
        span = max(makespan, float(end - submit.min()))
    r = rho[done]
    out.update({
        "avg_jct": float(jct.mean()),
        "median_jct": float(np.median(jct)),
        "p95_jct": float(np.percentile(jct, 95)),
        "p99_jct": float(np.percentile(jct, 99)),
        "makespan": makespan,
        "avg_queueing_delay": float(queueing_delay[done].mean()),
        "avg_slowdown": float(slowdown[done].mean()),
        "utilization": float(gpu_seconds.sum() / (total_gpus * span)) if span > 0 else 0.0,
        "avg_rho": float(r.mean()),
        "max_rho": float(r.max()),
        "unfair_fraction": float((r > 1.0 + 1e-9).mean()),
        "preemptions": float(preemptions.sum()),
        "preemptions_per_job": float(preemptions.mean()),
        "restarts_per_job": float(restarts.mean()),
    })
    return out


def _core_arrays(core, e: int) -> dict[str, np.ndarray]:
    n = int(core.n_jobs[e])
    sl = (e, slice(0, n))
    finish = core.j_finish[sl]
    submit = core.j_submit[sl]
    work = core.j_work[sl]
    gpus = core.j_gpus[sl]
    jct = finish - submit
    with np.errstate(invalid="ignore", divide="ignore"):
        n_avg = np.where(jct > 0, (core.j_cont_finish[sl] - core.j_cont_submit[sl]) / jct, 1.0)
        rho = jct / (work * np.maximum(1.0, n_avg * gpus / core.total_gpus))
    # GPU time of jobs still running (a truncated episode) counts too
    active = core.s_status[e] != 0
    gpu_sec = core.j_gpu_sec[sl].copy()
    gpu_sec[core.s_job[e][active]] += core.s_attained[e][active]
    return {"submit": submit, "first_start": core.j_start[sl], "finish": finish, "num_gpus": gpus,
            "gpus_last": core.j_gpus_used[sl], "duration": work, "jct": jct,
            "queueing_delay": core.j_start[sl] - submit, "slowdown": jct / np.maximum(work, SLOWDOWN_MIN_DURATION),
            "rho": rho,
            "preemptions": core.j_preempt[sl], "restarts": core.j_restarts[sl], "gpu_seconds": gpu_sec}


def from_core(core, e: int, job_id: np.ndarray | None = None) -> pd.DataFrame:
    """Per-job results (:data:`RESULT_COLUMNS`) of env ``e`` of a :class:`envs.core.ClusterCore`."""
    arrays = _core_arrays(core, e)
    ids = job_id if job_id is not None else np.arange(len(arrays["submit"]))
    return pd.DataFrame({"job_id": ids, **arrays})[list(RESULT_COLUMNS)]


def summarize_core(core, e: int) -> dict[str, float]:
    """The metrics of env ``e`` straight from the core's arrays (no DataFrame: cheap per episode);
    GPU time runs up to the env's clock."""
    a = _core_arrays(core, e)
    return summarize_arrays(a["submit"], a["finish"], a["queueing_delay"], a["slowdown"], a["rho"],
                            a["gpu_seconds"], a["preemptions"], a["restarts"], core.total_gpus, float(core.clock[e]))


def summarize_core_many(core, envs: np.ndarray) -> list[dict[str, float]]:
    """:func:`summarize_core` of each env in ``envs``, bit for bit, in one pass where it can.

    Envs whose jobs have all finished and whose workloads have one length are summarised
    together by the same NumPy reductions along the job axis (each row is contiguous, so sums,
    means and percentiles equal the one-env results exactly): at 64-job episodes the per-call
    cost of NumPy dominates, and a vector env ends many episodes per step. The rest (truncated
    episodes, odd lengths) go through :func:`summarize_core`."""
    envs = np.asarray(envs, dtype=np.int64)
    out: dict[int, dict[str, float]] = {}
    n_jobs = core.n_jobs[envs]
    whole = core.n_done[envs] >= n_jobs
    for n in np.unique(n_jobs[whole]):
        group = envs[whole & (n_jobs == n)]
        if len(group) < 2 or n == 0:
            continue
        for e, summary in zip(group.tolist(), _summarize_finished(core, group, int(n)), strict=True):
            out[e] = summary
    return [out[e] if e in out else summarize_core(core, e) for e in envs.tolist()]


def _summarize_finished(core, envs: np.ndarray, n: int) -> list[dict[str, float]]:
    """:func:`summarize_arrays` of envs whose ``n`` jobs have all finished, as 2-D reductions
    (the formulas of :func:`_core_arrays` and :func:`summarize_arrays`, row by row)."""
    sl = (envs[:, None], np.arange(n)[None, :])
    finish, submit, work, gpus = core.j_finish[sl], core.j_submit[sl], core.j_work[sl], core.j_gpus[sl]
    jct = finish - submit
    with np.errstate(invalid="ignore", divide="ignore"):
        n_avg = np.where(jct > 0, (core.j_cont_finish[sl] - core.j_cont_submit[sl]) / jct, 1.0)
        rho = jct / (work * np.maximum(1.0, n_avg * gpus / core.total_gpus))
    queueing = core.j_start[sl] - submit
    slowdown = jct / np.maximum(work, SLOWDOWN_MIN_DURATION)
    gpu_seconds = core.j_gpu_sec[sl].astype(np.float64)
    preemptions = core.j_preempt[sl].astype(np.float64)
    restarts = core.j_restarts[sl].astype(np.float64)
    makespan = finish.max(axis=1) - submit.min(axis=1)
    columns = {
        "avg_jct": jct.mean(axis=1),
        "median_jct": np.median(jct, axis=1),
        "p95_jct": np.percentile(jct, 95, axis=1),
        "p99_jct": np.percentile(jct, 99, axis=1),
        "makespan": makespan,
        "avg_queueing_delay": queueing.mean(axis=1),
        "avg_slowdown": slowdown.mean(axis=1),
        "utilization": np.divide(gpu_seconds.sum(axis=1), core.total_gpus * makespan,
                                 out=np.zeros(len(envs)), where=makespan > 0),
        "avg_rho": rho.mean(axis=1),
        "max_rho": rho.max(axis=1),
        "unfair_fraction": (rho > 1.0 + 1e-9).mean(axis=1),
        "preemptions": preemptions.sum(axis=1),
        "preemptions_per_job": preemptions.mean(axis=1),
        "restarts_per_job": restarts.mean(axis=1),
    }
    rows = [{"jobs": float(n), "unfinished": 0.0} for _ in range(len(envs))]
    for name, values in columns.items():
        for row, v in zip(rows, values.tolist(), strict=True):
            row[name] = v
    return rows
