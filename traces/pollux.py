"""The eight Pollux workloads as canonical job tables, with a duration per job from measured data.

Source: the Pollux artifact (Qiao et al., OSDI'21; petuum/adaptdl, branch ``osdi21-artifact``,
``simulator/``, Apache-2.0), read from ``../shared/reference/pollux/``:

- ``workloads/workload-<k>.csv`` (``name, time, application, num_replicas, batch_size``): 160
  jobs sampled from 8 hours of Philly, each given a "tuned" configuration (GPUs and total batch
  size) by the artifact's ``workload.py``;
- ``traces/<app>/``: per application, ``placements.csv`` and ``scalability.csv`` (measured time
  per training step against the placement and the per-GPU batch size) and
  ``validation-<batch size>.csv`` (iterations, metric and gradient statistics per epoch of a
  complete training run at that total batch size).

The workloads carry no durations. A faithful job model is Pollux's goodput model (throughput x
statistical efficiency, both changing with the allocation and the batch size as training
progresses); that belongs to the modern baselines, built later. Until then this loader gives every
job **one fixed duration: its run time at its tuned configuration**, i.e. how long the artifact's
own simulator trains that job when it keeps the tuned GPUs and batch size throughout (as its
Tiresias runs every job), recomputed here from the measurements:

1. placement: ``num_replicas`` GPUs packed on 4-GPU nodes (``(4, 4, ..., rest)``), the
   consolidated placement of the 16 x 4 testbed;
2. batch: per-GPU batch ``ceil(batch_size / num_replicas)``, split into gradient-accumulation
   steps when it exceeds the application's largest per-GPU batch (the largest measured in
   ``placements.csv``; 8 for yolov3, as the artifact sets it; a single-GPU job above the
   smallest measured batch size always accumulates at least once, as the artifact does); the
   effective batch is GPUs x per-GPU batch x steps;
3. step time at that placement and per-GPU batch: linear interpolation over the per-GPU batch
   in ``placements.csv`` when the placement was measured (up to 4 nodes), otherwise linear
   interpolation over (nodes, GPUs, per-GPU batch) of ``scalability.csv`` together with the
   placement measurements averaged per (nodes, GPUs, per-GPU batch); each extra accumulation
   step adds the step's compute time (step time minus synchronisation time);
4. statistical progress (the artifact's ``Job.step``): training ends after the epochs recorded
   in the ``validation-*.csv`` files (bert 2, cifar10 100, deepspeech2 80, imagenet 90, ncf 10,
   yolov3 50, the artifact's ``max_epochs``); epoch ``e`` needs progress ``P(e+1) - P(e)``, where
   ``P(e)`` is the smallest cumulative ``progress`` at the end of epoch ``e`` over the measured
   batch sizes, and a step makes progress ``gain = (var + sqr) / (var / scale + sqr)``, with
   ``sqr, var`` the epoch's ``grad_sqr, grad_var`` at the effective batch (linear interpolation
   between measured batch sizes) and ``scale`` = effective batch / smallest measured batch;
5. run time = sum over epochs of progress needed x step time / gain (seconds on the testbed's
   T4 GPUs). :meth:`Application.iteration_time` gives the plainer estimate the artifact's
   workload tuner scores configurations with (iterations of the complete run x step time); for
   the 16 configurations of the eight workloads the run time above is between 2% shorter and
   10% longer (yolov3) than it (:func:`configuration_table`).

What this approximates (read this before comparing with the papers):

- **Fixed batch size, fixed work.** Statistical efficiency enters only at the job's tuned batch
  size, once, in its duration. In the artifact's simulator progress per step keeps depending on
  the current batch size through the gradient noise scale, which Pollux exploits (it grows the
  batch with the GPUs) and Tiresias and Optimus+Oracle do not (they keep the tuned batch). So
  the rigid baselines (FIFO, Tiresias) see the same jobs as in the artifact up to interpolation
  error, elastic ones see a job whose total work does not change with its GPU count, and Pollux
  itself cannot be replayed faithfully on this model.
- **Elastic speed-up is the simulator's, not the measured one.** When an elastic policy gives a
  job ``n`` GPUs instead of its ``num_replicas``, its speed follows :mod:`traces.models`
  (``(n / requested) ** SCALING[model]``, Gavel's fitted exponent of the mapped model), not the
  measured placements of the application.
- **Models.** Each application maps to the closest model family of :mod:`traces.models`
  (:data:`APPLICATION_MODELS`): cifar10 (ResNet-18 on CIFAR-10) -> ``resnet18`` (Gavel's
  ResNet-18 is the same task); imagenet (ResNet-50) -> ``resnet50``; yolov3 (Darknet-53
  detector, a deep CNN) -> ``resnet50``; bert (BERT fine-tuning on SQuAD) -> ``transformer``;
  deepspeech2 (recurrent speech model) -> ``lm`` (Gavel's recurrent LSTM language model); ncf
  (neural collaborative filtering) -> ``recommendation`` (single-GPU, as every ncf job in the
  workloads). The model sets the job's locality penalty when its gang is spread and its
  elastic scaling; on the one-type ``pollux`` cluster it does not change rigid run times.
- **GPU type.** Durations of the canonical table are reference-seconds (V100). A measured run
  time ``T`` on T4 becomes ``T x SPEED[model]['t4']`` so that the job runs for exactly ``T``
  seconds on the ``pollux`` cluster (T4 nodes) at its tuned GPU count (see
  :mod:`envs.workload`). Give ``gpu_type`` to target another cluster.
- The 30 s restart delay and 60 s scheduling interval of the artifact are simulator settings of
  the suite (``restart_overhead``, policy knobs), not part of the job table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from traces import models
from traces.schema import validate

#: Pollux application -> model family of :mod:`traces.models` (see the module docstring).
APPLICATION_MODELS: dict[str, str] = {
    "bert": "transformer",
    "cifar10": "resnet18",
    "deepspeech2": "lm",
    "imagenet": "resnet50",
    "ncf": "recommendation",
    "yolov3": "resnet50",
}
#: Largest per-GPU batch where the artifact sets one below the largest measured.
MAX_LOCAL_BSZ: dict[str, int] = {"yolov3": 8}
#: GPUs per node of the Pollux testbed (placements pack on nodes of this size).
GPUS_PER_NODE = 4
#: The testbed's GPU type (the measurements were taken on it).
MEASURED_GPU = "t4"
WORKLOAD_COLUMNS = ("name", "time", "application", "num_replicas", "batch_size")


class PolluxDataError(ValueError):
    """A Pollux reference file that is missing or malformed (names the file)."""


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise PolluxDataError(f"{path}: no such file")
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PolluxDataError(f"{path}: cannot read: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PolluxDataError(f"{path}: expected columns {list(columns)}, missing {missing}")
    return df


@dataclass
class Application:
    """The measurements of one application (``traces/<name>/``)."""

    name: str
    placements: pd.DataFrame  # placement (str), local_bsz, step_time, sync_time
    scalability: pd.DataFrame  # num_nodes, num_replicas, local_bsz, step_time, sync_time
    validation: dict[int, pd.DataFrame]  # total batch size -> progress, iteration, grad_sqr, grad_var
    max_local_bsz: int
    _nd: _NDInterp | None = field(default=None, repr=False, compare=False)
    _throughput: ThroughputModel | None = field(default=None, repr=False, compare=False)
    _run_times: dict[tuple[float, float], float] = field(default_factory=dict, repr=False, compare=False)

    def throughput_model(self) -> ThroughputModel:
        """Pollux's throughput model fitted to this application's measurements (once)."""
        if self._throughput is None:
            self._throughput = fit_throughput(self)
        return self._throughput

    @classmethod
    def load(cls, folder: str | Path) -> Application:
        folder = Path(folder)
        name = folder.name
        cols = ("local_bsz", "step_time", "sync_time")
        placements = _read_csv(folder / "placements.csv", ("placement", *cols))
        placements["placement"] = placements["placement"].astype(str)
        scal = _read_csv(folder / "scalability.csv", ("num_nodes", "num_replicas", *cols))
        validation = {}
        for path in sorted(folder.glob("validation-*.csv")):
            m = re.fullmatch(r"validation-(\d+)\.csv", path.name)
            if m is None:
                continue
            val = _read_csv(path, ("progress", "iteration", "grad_sqr", "grad_var"))
            if len(val) == 0:
                raise PolluxDataError(f"{path}: no epochs")
            validation[int(m.group(1))] = val.reset_index(drop=True)
        if not validation:
            raise PolluxDataError(f"{folder}: no validation-<batch size>.csv files")
        max_local = MAX_LOCAL_BSZ.get(name, int(placements["local_bsz"].max()))
        return cls(name, placements, scal, dict(sorted(validation.items())), max_local)

    @property
    def epochs(self) -> int:
        """Epochs of a complete run (the artifact's ``max_epochs``: the shortest validation file)."""
        return min(len(v) for v in self.validation.values())

    @property
    def init_batch_size(self) -> int:
        return min(self.validation)

    # ------------------------------------------------------------------ measurements
    def step_time(self, placement: tuple[int, ...], local_bsz: float) -> tuple[float, float]:
        """``(step_time, sync_time)`` in seconds at ``placement`` (GPUs per node) and per-GPU batch."""
        placement = tuple(p for p in placement if p)
        key = "".join(map(str, min(placement[i:] + placement[:i] for i in range(len(placement)))))
        rows = self.placements[self.placements["placement"] == key]
        if len(rows):
            rows = rows.groupby("local_bsz", sort=True)[["step_time", "sync_time"]].mean()
            x = rows.index.to_numpy(np.float64)
            return (float(np.interp(local_bsz, x, rows["step_time"].to_numpy())),
                    float(np.interp(local_bsz, x, rows["sync_time"].to_numpy())))
        if self._nd is None:
            self._nd = _NDInterp(self)
        return self._nd(min(len(placement), 16), sum(placement), local_bsz)

    def _at_batch(self, column: str, batch_size: float) -> np.ndarray:
        """Per-epoch ``column`` at ``batch_size``, linear between the nearest measured sizes."""
        sizes = np.array(list(self.validation), dtype=np.float64)
        if not sizes[0] <= batch_size <= sizes[-1]:
            raise PolluxDataError(
                f"{self.name}: batch size {batch_size:g} outside the measured {int(sizes[0])}..{int(sizes[-1])}")
        n = self.epochs
        table = np.stack([v[column].to_numpy(np.float64)[:n] for v in self.validation.values()])
        return np.array([np.interp(batch_size, sizes, table[:, e]) for e in range(n)])

    def configuration(self, num_replicas: int, batch_size: int) -> tuple[tuple[int, ...], int, int]:
        """``(placement, per-GPU batch per step, accumulation steps)`` as the artifact sets them."""
        if num_replicas < 1:
            raise PolluxDataError(f"{self.name}: num_replicas must be >= 1, got {num_replicas}")
        full, rest = divmod(int(num_replicas), GPUS_PER_NODE)
        placement = (GPUS_PER_NODE,) * full + ((rest,) if rest else ())
        local = math.ceil(batch_size / num_replicas - 1e-8)
        accum = math.ceil(local / self.max_local_bsz - 1e-8) - 1
        if num_replicas == 1 and batch_size > self.init_batch_size:
            accum = max(1, accum)
        atomic = math.ceil(local / (accum + 1) - 1e-8)
        atomic = min(atomic, int(max(self.validation) / (num_replicas * (accum + 1))))
        return placement, atomic, accum

    def _step(self, num_replicas: int, batch_size: int) -> tuple[float, int]:
        placement, atomic, accum = self.configuration(num_replicas, batch_size)
        step, sync = self.step_time(placement, atomic)
        return step + accum * (step - sync), num_replicas * atomic * (accum + 1)

    def run_time(self, num_replicas: int, batch_size: int) -> float:
        """Seconds to train to completion on ``num_replicas`` packed GPUs at ``batch_size``
        (statistical progress, see the module docstring). Memoised: the measurements do not change."""
        key = (num_replicas, batch_size)
        if key not in self._run_times:
            self._run_times[key] = self._run_time(*key)
        return self._run_times[key]

    def _run_time(self, num_replicas: int, batch_size: int) -> float:
        step, effective = self._step(num_replicas, batch_size)
        n = self.epochs
        ends = np.min(np.stack([v["progress"].to_numpy(np.float64)[:n] for v in self.validation.values()]), axis=0)
        need = np.diff(np.concatenate([[0.0], ends]))
        sqr = self._at_batch("grad_sqr", effective)
        var = self._at_batch("grad_var", effective)
        scale = effective / self.init_batch_size
        gain = (var + sqr) / (var / scale + sqr)
        return float(np.sum(need * step / gain))

    def iteration_time(self, num_replicas: int, batch_size: int) -> float:
        """Iterations of the complete run at ``batch_size`` x step time at the same configuration
        (the estimate the artifact's tuner scores with; ``batch_size`` must be a measured one)."""
        if batch_size not in self.validation:
            raise PolluxDataError(f"{self.name}: no validation-{batch_size}.csv")
        step, _ = self._step(num_replicas, batch_size)
        return float(self.validation[batch_size]["iteration"].iloc[self.epochs - 1]) * step


class _NDInterp:
    def __init__(self, app: Application) -> None:
        from scipy.interpolate import LinearNDInterpolator

        xs = ["num_nodes", "num_replicas", "local_bsz"]
        ys = ["step_time", "sync_time"]
        p = app.placements.copy()
        p["num_nodes"] = p["placement"].str.len()
        p["num_replicas"] = p["placement"].map(lambda s: sum(int(c) for c in s))
        df = pd.concat([p.groupby(xs, as_index=False)[ys].mean(), app.scalability[xs + ys]],
                       ignore_index=True)
        self.name = app.name
        self.f = LinearNDInterpolator(df[xs].to_numpy(np.float64), df[ys].to_numpy(np.float64))

    def __call__(self, nodes: int, replicas: int, local_bsz: float) -> tuple[float, float]:
        step, sync = self.f([[nodes, replicas, local_bsz]])[0]
        if not (np.isfinite(step) and np.isfinite(sync)):
            raise PolluxDataError(
                f"{self.name}: no measurement around {replicas} GPUs on {nodes} nodes at per-GPU batch {local_bsz}")
        return float(step), float(sync)


@lru_cache(maxsize=16)
def _application(folder: str) -> Application:
    return Application.load(folder)


def application(root: str | Path, name: str) -> Application:
    """The measurements of application ``name`` under ``root`` (``.../reference/pollux``), cached."""
    folder = Path(root) / "traces" / name
    if not folder.is_dir():
        raise PolluxDataError(f"{folder}: no such folder (application {name!r})")
    return _application(str(folder.resolve()))


def load_workload(path: str | Path, *, root: str | Path | None = None, gpu_type: str = MEASURED_GPU) -> pd.DataFrame:
    """Workload ``path`` (``workload-<k>.csv``) as a canonical job table (validated).

    ``root`` is the Pollux reference folder holding ``traces/`` (default: two levels above
    ``path``). Columns: ``job_id`` (the workload's ``name``), ``submit_time`` (``time``),
    ``duration`` (reference-seconds: the measured run time at the tuned configuration x
    ``SPEED[model][gpu_type]``, see the module docstring), ``num_gpus`` (``num_replicas``),
    ``model`` (:data:`APPLICATION_MODELS`), ``vc`` the application name, ``user``/``status``/
    ``gpu_type`` empty. ``attrs['pollux']`` records the file and the run time in seconds per job.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    df = _read_csv(path, WORKLOAD_COLUMNS)
    gpu_type = models.normalize_gpu_type(gpu_type)
    unknown = sorted(set(df["application"]) - set(APPLICATION_MODELS))
    if unknown:
        raise PolluxDataError(f"{path}: unknown application(s) {unknown}; known {sorted(APPLICATION_MODELS)}")
    seconds = np.array([
        application(root, app).run_time(int(r), int(b))
        for app, r, b in zip(df["application"], df["num_replicas"], df["batch_size"], strict=True)
    ])
    model = df["application"].map(APPLICATION_MODELS)
    speed = model.map(lambda m: models.SPEED[m][models.GPU_ALIASES[gpu_type]]).to_numpy(np.float64)
    out = pd.DataFrame({
        "job_id": df["name"].astype(str),
        "submit_time": df["time"].astype(np.float64),
        "duration": seconds * speed,
        "num_gpus": df["num_replicas"].astype(np.int64),
        "user": "",
        "vc": df["application"].astype(str),
        "status": "",
        "gpu_type": "",
        "model": model.astype(str),
    })
    out = validate(out, source=str(path))
    names = df["name"].astype(str)
    out.attrs["pollux"] = {"file": str(path), "root": str(root), "gpu_type": gpu_type,
                           "run_time": dict(zip(names, seconds.tolist(), strict=True)),
                           "application": dict(zip(names, df["application"].astype(str), strict=True)),
                           "batch_size": dict(zip(names, df["batch_size"].astype(int), strict=True))}
    return out


#: the eight workloads of the Pollux artifact (``workloads/workload-<k>.csv``)
WORKLOAD_NUMBERS = tuple(range(1, 9))


def load_workloads(root: str | Path, numbers: tuple[int, ...] = WORKLOAD_NUMBERS, *,
                   gpu_type: str = MEASURED_GPU) -> pd.DataFrame:
    """Pollux workloads ``numbers`` of the reference folder ``root`` one after another, as one
    canonical job table: workload ``k`` starts when the one before it ends its submissions (its
    own submit times shifted by the previous workload's last submit plus its median gap), and its
    job names are prefixed ``w<k>-`` so they stay unique. ``attrs['pollux']`` merges the
    workloads' records (run time, application and batch size per job), so goodput jobs keep
    their model (:func:`envs.workload.make_workload`). The workloads are samples of one
    distribution; a split by time (e.g. train.py's) gives the early ones to training and the
    last ones to the test part."""
    if not numbers:
        raise PolluxDataError("load_workloads: no workload numbers given")
    parts, merged, offset = [], None, 0.0
    for k in numbers:
        path = Path(root) / "workloads" / f"workload-{int(k)}.csv"
        if not path.is_file():
            raise PolluxDataError(f"{path}: no such workload file")
        w = load_workload(path, root=root, gpu_type=gpu_type)
        meta = w.attrs["pollux"]
        prefix = f"w{int(k)}-"
        w = w.assign(job_id=prefix + w["job_id"], submit_time=w["submit_time"] + offset)
        gaps = np.diff(w["submit_time"].to_numpy())
        offset = float(w["submit_time"].iloc[-1]) + (float(np.median(gaps)) if len(gaps) else 0.0)
        if merged is None:
            merged = {key: meta[key] for key in ("root", "gpu_type")} | {"file": [], "run_time": {},
                                                                          "application": {}, "batch_size": {}}
        merged["file"].append(meta["file"])
        for key in ("run_time", "application", "batch_size"):
            merged[key].update({prefix + name: v for name, v in meta[key].items()})
        parts.append(w)
    out = validate(pd.concat(parts, ignore_index=True), source=f"{root} workloads {list(numbers)}")
    out.attrs["pollux"] = merged
    return out


def configuration_table(root: str | Path, workloads: list[str | Path]) -> pd.DataFrame:
    """Each distinct (application, GPUs, batch size) of ``workloads`` with its run time in seconds,
    the tuner's iterations x step time estimate, the single-GPU run time at the same batch size
    and the scaling efficiency between them (documentation and checks)."""
    rows = set()
    for w in workloads:
        df = _read_csv(Path(w), WORKLOAD_COLUMNS)
        rows |= set(zip(df["application"], df["num_replicas"], df["batch_size"], strict=True))
    out = []
    for app, r, b in sorted(rows):
        a = application(root, app)
        t = a.run_time(int(r), int(b))
        t1 = a.run_time(1, int(b))
        out.append({"application": app, "num_replicas": int(r), "batch_size": int(b), "run_time": t,
                    "iteration_time": a.iteration_time(int(r), int(b)), "run_time_1gpu": t1,
                    "efficiency": t1 / (t * r)})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------- goodput model
#: Names of the parameters of Pollux's throughput model, in :class:`ThroughputModel` order.
THROUGHPUT_PARAMS = ("alpha_c", "beta_c", "alpha_r", "beta_r", "alpha_n", "beta_n", "gamma")


@dataclass(frozen=True)
class ThroughputModel:
    """Pollux's model of the time per training iteration (Qiao et al., OSDI'21, section 3.1).

    - compute time of one micro-step at per-GPU batch ``m``: ``T_grad = alpha_c + beta_c * m``;
    - synchronisation with ``K`` replicas: 0 if ``K = 1``, else ``alpha + beta * max(K - 2, 0)``
      with ``(alpha_r, beta_r)`` when every replica sits on one node and ``(alpha_n, beta_n)``
      when the job spans nodes;
    - overlap of the last micro-step with synchronisation:
      ``T_step = (T_grad ** gamma + T_sync ** gamma) ** (1 / gamma)``, ``gamma >= 1``;
    - with ``s`` gradient-accumulation steps: ``T_iter = s * T_grad + T_step``.

    Fitted to an application's measurements by :meth:`Application.throughput_model`.
    """

    alpha_c: float
    beta_c: float
    alpha_r: float
    beta_r: float
    alpha_n: float
    beta_n: float
    gamma: float

    def iteration_time(self, replicas, multinode, local_bsz, accum=0, compute_scale=1.0) -> np.ndarray:
        """Seconds per iteration (arrays broadcast together). ``compute_scale`` divides the
        compute time (a faster GPU type); synchronisation is network-bound and unchanged."""
        replicas = np.asarray(replicas, dtype=np.float64)
        t_grad = (self.alpha_c + self.beta_c * np.asarray(local_bsz, dtype=np.float64)) / compute_scale
        extra = np.maximum(replicas - 2.0, 0.0)
        t_sync = np.where(np.asarray(multinode, dtype=bool), self.alpha_n + self.beta_n * extra,
                          self.alpha_r + self.beta_r * extra)
        t_sync = np.where(replicas > 1, t_sync, 0.0)
        g = self.gamma
        t_step = (t_grad ** g + t_sync ** g) ** (1.0 / g)
        return np.asarray(accum, dtype=np.float64) * t_grad + t_step


def _observations(app: Application) -> pd.DataFrame:
    p = app.placements
    obs = pd.DataFrame({
        "replicas": p["placement"].map(lambda s: sum(int(c) for c in s)).astype(np.float64),
        "nodes": p["placement"].str.len().astype(np.float64),
        "local_bsz": p["local_bsz"].astype(np.float64),
        "step_time": p["step_time"].astype(np.float64),
        "sync_time": p["sync_time"].astype(np.float64),
    })
    s = app.scalability
    obs = pd.concat([obs, pd.DataFrame({
        "replicas": s["num_replicas"].astype(np.float64), "nodes": s["num_nodes"].astype(np.float64),
        "local_bsz": s["local_bsz"].astype(np.float64), "step_time": s["step_time"].astype(np.float64),
        "sync_time": s["sync_time"].astype(np.float64)})], ignore_index=True)
    return obs[(obs["step_time"] > obs["sync_time"]) & (obs["sync_time"] >= 0)]


def fit_throughput(app: Application) -> ThroughputModel:
    """Fit :class:`ThroughputModel` to every measurement of ``app`` (``placements.csv`` and
    ``scalability.csv``), as Pollux fits its agents' profiles: least squares on the log-errors of
    the predicted compute time (measured: step time - sync time) and step time, with Pollux's
    regularisers ``1e-3 (gamma - 1)^2`` and ``1e-2 ((beta_n / alpha_n)^2 + (beta_r / alpha_r)^2)``."""
    from scipy.optimize import least_squares

    obs = _observations(app)
    k, multi, m = obs["replicas"].to_numpy(), (obs["nodes"] > 1).to_numpy(), obs["local_bsz"].to_numpy()
    log_grad = np.log(obs["step_time"].to_numpy() - obs["sync_time"].to_numpy())
    log_step = np.log(obs["step_time"].to_numpy())
    extra = np.maximum(k - 2.0, 0.0)

    def residuals(x: np.ndarray) -> np.ndarray:
        ac, bc, ar, br, an, bn, g = x
        t_grad = ac + bc * m
        t_sync = np.where(k > 1, np.where(multi, an + bn * extra, ar + br * extra), 0.0)
        t_step = (t_grad ** g + t_sync ** g) ** (1.0 / g)
        return np.concatenate([np.log(t_grad) - log_grad, np.log(t_step) - log_step,
                               [np.sqrt(1e-3) * (g - 1.0), 0.1 * br / ar, 0.1 * bn / an]])

    x0 = np.array([0.1, 0.01, 0.1, 0.01, 0.1, 0.01, 1.001])
    lo = np.array([1e-8] * 6 + [1.0])
    hi = np.array([np.inf] * 6 + [10.0])
    fit = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac", max_nfev=5000)
    return ThroughputModel(*(float(v) for v in fit.x))


def epoch_gains(app: Application, batch_size: np.ndarray) -> np.ndarray:
    """``(epochs, *batch_size.shape)``: statistical progress per iteration at total batch size
    ``batch_size`` in each epoch, ``(var + sqr) / (var / scale + sqr)`` with ``scale`` =
    batch size / the initial (smallest measured) batch size and ``sqr, var`` the epoch's gradient
    statistics interpolated between the measured batch sizes (clamped to the measured range).
    This is the batch size times Pollux's efficiency ``E(M) = (phi + M0) / (phi + M)``, in units
    of iterations at the initial batch size."""
    batch_size = np.asarray(batch_size, dtype=np.float64)
    sizes = np.array(list(app.validation), dtype=np.float64)
    n = app.epochs
    sqr_t = np.stack([v["grad_sqr"].to_numpy(np.float64)[:n] for v in app.validation.values()])  # (B, E)
    var_t = np.stack([v["grad_var"].to_numpy(np.float64)[:n] for v in app.validation.values()])
    flat = np.clip(batch_size.ravel(), sizes[0], sizes[-1])
    sqr = np.stack([np.interp(flat, sizes, sqr_t[:, e]) for e in range(n)])
    var = np.stack([np.interp(flat, sizes, var_t[:, e]) for e in range(n)])
    scale = batch_size.ravel() / app.init_batch_size
    gain = (var + sqr) / (var / scale + sqr)
    return gain.reshape((n, *batch_size.shape))


def progress_needed(app: Application) -> np.ndarray:
    """``(epochs,)`` statistical progress each epoch needs (the artifact's ``Job.step`` targets)."""
    n = app.epochs
    ends = np.min(np.stack([v["progress"].to_numpy(np.float64)[:n] for v in app.validation.values()]), axis=0)
    return np.diff(np.concatenate([[0.0], ends]))


def limits(app: Application) -> dict[str, int]:
    """Batch-size limits of ``app``: ``min_local_bsz`` (smallest measured per-GPU batch),
    ``max_local_bsz``, ``init_batch_size`` (smallest validated), ``max_batch_size`` (largest
    validated) and ``max_replicas`` (Pollux's cap ``min(64, max_batch_size // min_local_bsz)``;
    1 for ncf, which the artifact pins to one GPU)."""
    min_local = int(app.placements["local_bsz"].min())
    max_batch = int(max(app.validation))
    cap = 1 if app.name == "ncf" else max(1, min(64, max_batch // min_local))
    return {"min_local_bsz": min_local, "max_local_bsz": int(app.max_local_bsz),
            "init_batch_size": int(app.init_batch_size), "max_batch_size": max_batch, "max_replicas": cap}
