"""Workloads of papers' own experiments, drawn as their artifacts or papers describe them (seeded).

They build on the simulator (durations rescaled through its speed model), so they live above
``envs`` with the reproduction report that uses them (:mod:`leaderboard.reproduce`).

- :func:`shockwave_trace`: the Shockwave artifact's ``scheduler/scripts/utils/generate_trace.py``
  as its 32-GPU TACC reproduction calls it (trace
  ``120_0.2_5_100_40_25_0,0.5,0.5_0.6,0.3,0.09,0.01_multigpu_dynamic``): 120 jobs; GPU counts
  1/2/4/8 with probabilities 0.6/0.3/0.09/0.01; durations from 100 equally spaced values in
  0.2-5 h, drawn from the first 20% / next 30% / next 40% / last 10% of them (small, medium,
  large, extra large) with probabilities 0.72/0.2/0.05/0.03; Poisson arrivals with a mean gap
  of 40 s (the first job at 0); models that can adapt their batch size. Every job adapts
  dynamically (the artifact's mode mix static/Accordion/GNS = 0/0.5/0.5): replay with
  ``dynamic_fraction=1.0``. Cluster: :data:`TACC_32` (4 x 8 V100). The artifact's drawn
  duration is the job's run time at its *initial* batch size; a dynamically adapting job then
  runs faster, so alone it finishes sooner. The simulator instead keeps the run time alone equal
  to the drawn duration (:func:`envs.core.rates.growth_multiplier`); :func:`static_batch_durations`
  rescales a trace so that the drawn duration is the initial-batch run time, as in the artifact.
- :func:`synergy_trace`: Synergy's simulated setting (msr-fiddle/synergy ``simulator/``): servers
  of 8 GPUs, 24 CPUs and 500 GB (:func:`synergy_cluster`; the paper's simulated cluster has 16
  of them, 128 GPUs), a Philly-like trace (:func:`traces.synthetic.synthetic`) and Synergy's job
  mix of 34% image, 33% language and 33% speech models (``jobs/model_zoo.py``, round robin over
  the models of a task). The simulator's model table lacks most of Synergy's models, so each is
  stood in for by the model whose CPU profile (:data:`traces.models.CPU_PROFILE`: CPUs per GPU
  at the best speed, and that speed) is nearest: :data:`SYNERGY_PROXIES`.
- :func:`cpu_heavy_trace`: a Philly-like window whose models are mostly CPU-sensitive (one-GPU
  jobs mostly ResNet-18, A3C and CycleGAN; gangs mostly ResNet-18), the setting of Synergy's
  tests and of its reproduction row.
- :func:`lucid_small_jobs`: Lucid's setting: mostly small recurring jobs (GPU counts 1/2/4 at
  65/30/5%), log-normal durations around a median per model (:data:`LUCID_MEDIAN`), Poisson
  arrivals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from envs.core.rates import growth_multiplier
from envs.workload import make_workload
from traces import clusters, models
from traces.clusters import ClusterSpec
from traces.schema import make_trace
from traces.synthetic import synthetic

__all__ = [
    "CPU_HEAVY_MULTI",
    "CPU_HEAVY_SINGLE",
    "LUCID_MEDIAN",
    "SYNERGY_MIX",
    "SYNERGY_PROXIES",
    "TACC_32",
    "cpu_heavy_trace",
    "lucid_small_jobs",
    "shockwave_trace",
    "static_batch_durations",
    "synergy_cluster",
    "synergy_trace",
]

#: the Shockwave artifact's 32-GPU physical cluster (TACC: 8 nodes x 4 V100 there; the GPU count is
#: what its GPU-count-only scheduler sees)
TACC_32 = clusters.homogeneous(4, 8, name="tacc-32")


def shockwave_trace(num_jobs: int = 120, seed: int = 0, *, interarrival: float = 40.0) -> pd.DataFrame:
    """Jobs drawn as the Shockwave artifact's trace generator draws them (module docstring).

    ``interarrival``: mean gap between arrivals, seconds (the artifact's ``--lam 40``)."""
    if int(num_jobs) != num_jobs or num_jobs < 1:
        raise ValueError(f"num_jobs must be a positive integer, got {num_jobs!r}")
    if not interarrival > 0:
        raise ValueError(f"interarrival must be > 0 seconds, got {interarrival!r}")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(interarrival, num_jobs)
    gaps[0] = 0.0
    gpus = rng.choice([1, 2, 4, 8], size=num_jobs, p=[0.6, 0.3, 0.09, 0.01])
    durations = np.linspace(0.2, 5.0, 100)
    bounds = [0, 20, 50, 90, 100]  # small, medium, large, extra-large index ranges
    cls = rng.choice(4, size=num_jobs, p=[0.72, 0.2, 0.05, 0.03])
    hours = np.array([rng.choice(durations[bounds[c]:bounds[c + 1]]) for c in cls])
    model = rng.choice(models.MULTI_GPU_MODELS, num_jobs)  # models that can adapt their batch size
    return make_trace(pd.DataFrame({"submit_time": np.cumsum(gaps), "duration": hours * 3600.0,
                                    "num_gpus": gpus, "model": model}))


def static_batch_durations(trace: pd.DataFrame, cluster: ClusterSpec, *, seed: int = 0, dynamic_fraction: float = 1.0,
                           phases: int = 4) -> pd.DataFrame:
    """``trace`` with each dynamically adapting job's duration cut to its run time alone when its
    *drawn* duration is the run time at its initial batch size (the artifact's meaning).

    The simulator runs an adapting job at ``g**p * norm`` times its nominal speed in phase p
    (``norm = mean_q g**-q`` < 1) so that alone it runs for its duration; all its work at the
    initial speed would take ``duration / norm``, so the duration whose initial-speed run time is
    the drawn one is ``drawn * norm``. The growth factors are those :func:`envs.simulate` draws for
    the same ``seed`` and ``dynamic_fraction`` (the draw does not depend on durations)."""
    wl = make_workload(trace, cluster, seed=seed, dynamic_fraction=dynamic_fraction)
    g = wl.growth if wl.growth is not None else np.ones(len(trace))
    scale = growth_multiplier(g, np.zeros(len(g), dtype=np.int64), phases)  # norm (1 for static jobs)
    out = trace.copy()
    out["duration"] = trace["duration"].to_numpy(np.float64) * scale
    out.attrs = dict(trace.attrs)
    return out


# ---------------------------------------------------------------------------------- Synergy
#: Synergy's models (``jobs/model_zoo.py``) -> the simulator's model with the nearest CPU profile
#: (Synergy's ideal CPUs per GPU and speed-up there, from its per-model profiles, vs
#: :data:`traces.models.CPU_PROFILE`), for single-GPU and for multi-GPU jobs (which need a model
#: that scales past one GPU).
SYNERGY_PROXIES: dict[str, tuple[str, str]] = {
    "alexnet": ("a3c", "resnet18"),         # 12 CPUs, 2.94x  ->  a3c 12 CPUs, 2.9x
    "res18": ("resnet18", "resnet18"),      # 9 CPUs, 2.4x
    "res50": ("resnet50", "resnet50"),      # 4 CPUs, 1.15x
    "mobilenet": ("cyclegan", "resnet18"),  # 6 CPUs, 1.55x   ->  cyclegan 6 CPUs, 1.55x
    "shufflenet": ("a3c", "resnet18"),      # 12 CPUs, 2.89x
    "gnmt": ("transformer", "transformer"),  # 1 CPU, 1.0x
    "transformer": ("transformer", "transformer"),
    "lstm": ("lm", "lm"),
    "m5": ("resnet18", "resnet18"),         # 6 CPUs, 2.5x    ->  resnet18 9 CPUs, 2.4x
    "deepspeech": ("resnet50", "resnet50"),  # 3 CPUs, 1.0x    ->  resnet50 4 CPUs, 1.15x
}
#: Synergy's task split and the models of each task (``ModelZoo`` defaults)
SYNERGY_MIX: dict[str, tuple[float, tuple[str, ...]]] = {
    "image": (0.34, ("alexnet", "res18", "res50", "mobilenet", "shufflenet")),
    "language": (0.33, ("gnmt", "transformer", "lstm")),
    "speech": (0.33, ("m5", "deepspeech")),
}


def synergy_cluster(num_servers: int = 16) -> ClusterSpec:
    """``num_servers`` of Synergy's servers: 8 V100s, 24 CPUs and 500 GB each
    (``configs/default_cluster.ini``: 3 CPUs and 62.5 GB per GPU)."""
    return clusters.homogeneous(num_servers, 8, cpus=24, mem_gb=500, name=f"synergy-{num_servers}x8")


def synergy_trace(num_jobs: int, load: float, seed: int = 0, *, cluster: ClusterSpec | None = None,
                  max_gpus: int = 8, duration_range: tuple[float, float] = (600.0, 20000.0)) -> pd.DataFrame:
    """A Philly-like window (:func:`traces.synthetic.synthetic`, offered load ``load`` on
    ``cluster``, default :func:`synergy_cluster`) whose models follow Synergy's job mix: a task
    drawn 34/33/33% (image/language/speech), a model uniformly among the task's, then its
    proxy (:data:`SYNERGY_PROXIES`). ``attrs['synergy_model']`` keeps Synergy's model names."""
    spec = synergy_cluster() if cluster is None else cluster
    tr = synthetic(num_jobs, load=load, cluster=spec, seed=seed, max_gpus=max_gpus, duration_range=duration_range)
    rng = np.random.default_rng([seed, 7])
    tasks = list(SYNERGY_MIX)
    task = rng.choice(len(tasks), size=len(tr), p=[SYNERGY_MIX[t][0] for t in tasks])
    pick = rng.random(len(tr))
    names = np.array([SYNERGY_MIX[tasks[t]][1][int(u * len(SYNERGY_MIX[tasks[t]][1]))] for t, u in zip(task, pick, strict=True)],
                     dtype=object)
    multi = tr["num_gpus"].to_numpy() > 1
    tr["model"] = [SYNERGY_PROXIES[n][int(m)] for n, m in zip(names, multi, strict=True)]
    tr.attrs["synergy_model"] = names.tolist()
    return tr


#: Lucid's per-model median duration (s) of its small recurring jobs
LUCID_MEDIAN = {"resnet18": 1800, "resnet50": 5400, "transformer": 3600, "lm": 2700, "recommendation": 900,
                "a3c": 1200, "cyclegan": 7200}


def lucid_small_jobs(num_jobs: int, seed: int, jobs_per_hour: float = 24.0) -> pd.DataFrame:
    """Lucid's setting (see the module docstring): ``num_jobs`` jobs, ``jobs_per_hour`` arrivals."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(3600.0 / jobs_per_hour, num_jobs)
    submit = np.cumsum(gaps) - gaps[0]
    gpus = rng.choice([1, 2, 4], size=num_jobs, p=[0.65, 0.3, 0.05])
    model = rng.choice(models.MODELS, num_jobs)
    dur = np.array([LUCID_MEDIAN[m] for m in model]) * np.exp(rng.normal(0.0, 0.5, num_jobs))
    return make_trace(pd.DataFrame({"submit_time": submit, "duration": dur, "num_gpus": gpus, "model": model}))


#: models and their probabilities of :func:`cpu_heavy_trace`'s one-GPU jobs and of its gangs
#: (models that scale past one GPU)
CPU_HEAVY_SINGLE = (("resnet18", "a3c", "cyclegan", "resnet50", "transformer", "lm"), (0.35, 0.25, 0.15, 0.05, 0.10, 0.10))
CPU_HEAVY_MULTI = (("resnet18", "resnet50", "transformer", "lm"), (0.6, 0.1, 0.15, 0.15))


def cpu_heavy_trace(num_jobs: int, load: float, seed: int, cluster: ClusterSpec) -> pd.DataFrame:
    """A Philly-like synthetic window (up to 8 GPUs, 600-20,000 s) on ``cluster`` whose models
    are drawn from :data:`CPU_HEAVY_SINGLE` (one-GPU jobs) and :data:`CPU_HEAVY_MULTI` (gangs)."""
    tr = synthetic(num_jobs, load=load, cluster=cluster, seed=seed, max_gpus=8, duration_range=(600, 20000))
    rng = np.random.default_rng(seed)
    single = rng.choice(np.array(CPU_HEAVY_SINGLE[0]), size=len(tr), p=list(CPU_HEAVY_SINGLE[1]))
    multi = rng.choice(np.array(CPU_HEAVY_MULTI[0]), size=len(tr), p=list(CPU_HEAVY_MULTI[1]))
    tr["model"] = np.where(tr["num_gpus"] > 1, multi, single)
    return tr
