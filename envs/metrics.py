"""Per-job results and the scheduling metrics of DESIGN section 6.

- JCT = finish - submit: mean, median, p95, p99 (numpy linear percentiles).
- makespan = last finish - first submit.
- queueing delay = first start - submit (mean).
- slowdown = JCT / (run time alone on the requested GPUs of the reference type) (mean).
- utilisation = allocated GPU-seconds / (cluster GPUs x makespan).
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
        "queueing_delay": first_start - submit, "slowdown": jct / duration, "rho": rho,
        "preemptions": preemptions, "restarts": restarts, "gpu_seconds": gpu_seconds,
    })


def summarize(results: pd.DataFrame, total_gpus: int) -> dict[str, float]:
    """The metrics of a replay or episode from its :func:`job_results` table."""
    done = results[results["finish"].notna()]
    jct = done["jct"].to_numpy(float)
    out: dict[str, float] = {"jobs": float(len(results)), "unfinished": float(len(results) - len(done))}
    if len(done) == 0:
        return out
    makespan = float(done["finish"].max() - results["submit"].min())
    out.update({
        "avg_jct": float(jct.mean()),
        "median_jct": float(np.median(jct)),
        "p95_jct": float(np.percentile(jct, 95)),
        "p99_jct": float(np.percentile(jct, 99)),
        "makespan": makespan,
        "avg_queueing_delay": float(done["queueing_delay"].mean()),
        "avg_slowdown": float(done["slowdown"].mean()),
        "utilization": float(results["gpu_seconds"].sum() / (total_gpus * makespan)) if makespan > 0 else 0.0,
        "avg_rho": float(done["rho"].mean()),
        "max_rho": float(done["rho"].max()),
        "unfair_fraction": float((done["rho"] > 1.0 + 1e-9).mean()),
        "preemptions": float(results["preemptions"].sum()),
        "preemptions_per_job": float(results["preemptions"].mean()),
        "restarts_per_job": float(results["restarts"].mean()),
    })
    return out


def from_core(core, e: int, job_id: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`job_results` for env ``e`` of a :class:`envs.core.ClusterCore`."""
    n = int(core.n_jobs[e])
    sl = (e, slice(0, n))
    finished = ~np.isnan(core.j_finish[sl])
    contention = np.where(finished, core.j_cont_finish[sl] - core.j_cont_submit[sl], np.nan)
    return job_results(
        job_id if job_id is not None else np.arange(n), core.j_submit[sl], core.j_start[sl],
        core.j_finish[sl], core.j_gpus[sl], core.j_gpus_used[sl], core.j_work[sl],
        core.j_preempt[sl], core.j_restarts[sl], core.j_gpu_sec[sl], contention, core.total_gpus,
    )
