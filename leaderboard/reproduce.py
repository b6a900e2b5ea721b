"""Reproduction report: every paper's headline comparison, rerun in its own setting.

Each :class:`Row` names a paper, its claim and its published figure, and runs the project's
version of the experiment (:func:`envs.simulate` with :func:`baselines.get`, on the workload the
paper's artifact or our test of that claim uses) at a ``scale``: ``"small"`` (seconds, for the
test) or ``"full"`` (the settings of the claim's test, for the committed ``REPRODUCTION.md``).
A row returns one or more :class:`Measure` (a factor "how many times better", or a value in
seconds), each with its mean, the half-width of its 95% Student-t interval over the runs and
the number of runs; :func:`verdict` compares it with the paper's figure.

    python -m leaderboard reproduce [--scale small|full] [--rows NAME ...] [--agent DIR]
                                    [--out DIR] [--workers N]

writes ``REPRODUCTION.md`` and ``reproduction.csv`` into ``--out``
(default ``leaderboard-results/reproduction/``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leaderboard.paper_workloads import cpu_heavy_trace, lucid_small_jobs, shockwave_trace

#: the scales a row can run at
SCALES = ("small", "full")
#: the verdicts, strongest first
VERDICTS = ("holds", "holds in direction", "does not hold")
#: "holds" needs our figure within this relative distance of the paper's
TOLERANCE = 0.30
#: where the two known magnitude gaps are analysed
GAPS_DOC = "docs/magnitude_gaps.md"
DEFAULT_OUT = Path("leaderboard-results") / "reproduction"


# ------------------------------------------------------------------------------------ figures
@dataclass(frozen=True)
class Measure:
    """One compared figure of a row.

    ``kind`` is ``"factor"`` (how many times better the claimed policy is than its baseline,
    1 = no difference; the direction holds when it is above 1) or ``"seconds"`` (a value whose
    direction is the row's ordering, given as ``direction``). ``paper`` is the published figure,
    a ``(low, high)`` range, or ``None`` where the paper gives none. ``half`` is the half-width
    of the 95% interval of ``ours`` over ``n`` runs (NaN for one run)."""

    label: str
    kind: str
    paper: float | tuple[float, float] | None
    ours: float
    half: float
    n: int
    direction: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("factor", "seconds"):
            raise ValueError(f"Measure.kind must be 'factor' or 'seconds', got {self.kind!r}")
        if self.kind == "seconds" and self.direction is None:
            raise ValueError(f"{self.label}: a 'seconds' measure needs its direction (the row's ordering)")

    @property
    def holds_direction(self) -> bool:
        if self.direction is not None:
            return bool(self.direction)
        return bool(self.ours > 1.0)

    @property
    def ratio(self) -> float:
        return ratio(self.paper, self.ours, self.kind)

    @property
    def verdict(self) -> str:
        return verdict(self.paper, self.ours, self.holds_direction, self.kind)


def ratio(paper: float | tuple[float, float] | None, ours: float, kind: str = "seconds") -> float:
    """How our figure compares with the paper's: ours / paper for a value; for a factor, the
    ratio of the gains (ours - 1) / (paper - 1), so that 1.05x against a paper's 1.3x is 0.17
    (a sixth of the gain), not 0.81. For a range, to its nearest end (1 inside it); NaN where
    the paper gives no figure or ours is not finite."""
    if paper is None or not math.isfinite(ours):
        return math.nan
    shift = 1.0 if kind == "factor" else 0.0
    x = ours - shift
    lo, hi = (paper if isinstance(paper, tuple) else (paper, paper))
    lo, hi = lo - shift, hi - shift
    if lo <= x <= hi:
        return 1.0
    return x / lo if x < lo else x / hi


def verdict(paper: float | tuple[float, float] | None, ours: float, direction: bool, kind: str = "seconds",
            tolerance: float = TOLERANCE) -> str:
    """``"does not hold"`` if our run contradicts the paper's direction; ``"holds"`` if it agrees
    and :func:`ratio` is within ``tolerance`` of 1; otherwise, or where the paper gives no
    figure, ``"holds in direction"``."""
    if not direction:
        return "does not hold"
    r = ratio(paper, ours, kind)
    if math.isfinite(r) and abs(r - 1.0) <= tolerance + 1e-12:
        return "holds"
    return "holds in direction"


def stat(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, 95% Student-t half-width (NaN for one value) and count."""
    from leaderboard.report import ci95

    return ci95(np.asarray(values, dtype=np.float64))


def factor(label: str, baseline: Sequence[float], policy: Sequence[float], paper, *,
           higher_is_better: bool = False, ties_hold: bool = False) -> Measure:
    """Per-run factor baseline / policy (policy / baseline when higher is better), mean and CI
    over runs; where some run's denominator is 0, the ratio of the means (no interval). The
    direction holds when the factor is above 1 (at least 1 with ``ties_hold``, for claims of
    the form "no worse")."""
    b = np.asarray(baseline, dtype=np.float64)
    p = np.asarray(policy, dtype=np.float64)
    num, den = (p, b) if higher_is_better else (b, p)
    if (den > 0).all():
        mean, half, n = stat(num / den)
    else:
        mean, half, n = (num.mean() / den.mean() if den.mean() > 0 else math.inf), math.nan, len(num)
    return Measure(label, "factor", paper, float(mean), float(half), int(n),
                   direction=bool(mean >= 1.0) if ties_hold else None)


def seconds(label: str, values: Sequence[float], paper, direction: bool) -> Measure:
    mean, half, n = stat(values)
    return Measure(label, "seconds", paper, float(mean), float(half), int(n), direction=bool(direction))


# ------------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Row:
    """One paper's headline comparison. ``settings[scale]`` holds the knobs ``run`` reads
    (seeds, jobs, windows); ``describe(scale)`` says in words what is run; ``needs`` are files
    under the shared data folder (the row is reported as not run without them)."""

    name: str
    paper: str
    claim: str
    paper_figure: str
    run_fn: Callable[[dict, dict], list[Measure]]
    settings: dict[str, dict]
    setting_text: str
    reason: str = ""
    needs: tuple[tuple[str, ...], ...] = ()

    def describe(self, scale: str) -> str:
        return self.setting_text.format(**self.settings[scale])

    def run(self, scale: str, options: dict | None = None) -> list[Measure]:
        """Our figures at ``scale`` (``options``: e.g. ``{"agent": DIR}``)."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        return self.run_fn(self.settings[scale], dict(options or {}))

    def command(self, scale: str) -> str:
        agent = " --agent AGENT_DIR" if self.name == "agent" else ""
        return f"python -m leaderboard reproduce --rows {self.name} --scale {scale}{agent}"


class NotRun(Exception):
    """A row that cannot run here (missing data, no agent); ``str()`` says why."""


def _shared(*parts: str) -> Path:
    from traces.paths import shared_file

    path = shared_file(*parts)
    if path is None:
        raise NotRun(f"needs {'/'.join(parts)} in the shared data folder")
    return path


def _metrics(trace, cluster, name: str, *, seed: int = 0, **settings) -> dict:
    import baselines
    import envs

    knobs = settings.pop("knobs", {})
    return envs.simulate(trace, cluster, baselines.get(name, **knobs), seed=seed, **settings).metrics


# --- workloads (the generators of the papers' artifacts, as the claims' tests draw them)
def philly_windows(s: dict) -> list[pd.DataFrame]:
    """Windows of the Pollux Philly trace (jobs <= 16 GPUs), rescaled to load 2 on ``small``."""
    from traces import load_trace, window

    trace = load_trace(_shared("traces", "philly", "pollux_philly.csv.gz"))
    trace = trace[trace["num_gpus"] <= 16].reset_index(drop=True)
    return [window(trace, start=start, num_jobs=s["jobs"], load=2.0, cluster="small") for start in s["starts"]]


def gavel_workload(num_jobs: int, jobs_per_hour: float, seed: int) -> pd.DataFrame:
    """Gavel's generator (``scheduler/utils.py``): GPU counts 1/2/4/8 at 70/10/15/5%, V100
    durations 10^U(1.5, 3) min for 80% of the jobs and 10^U(3, 4) for 20%, Poisson arrivals."""
    from traces import make_trace
    from traces.models import MODELS, MULTI_GPU_MODELS

    rng = np.random.default_rng(seed)
    gaps = rng.exponential(3600.0 / jobs_per_hour, num_jobs)
    submit = np.cumsum(gaps) - gaps[0]
    gpus = rng.choice([1, 2, 4, 8], size=num_jobs, p=[0.7, 0.1, 0.15, 0.05])
    long = rng.random(num_jobs) < 0.2
    minutes = np.where(long, 10 ** rng.uniform(3, 4, num_jobs), 10 ** rng.uniform(1.5, 3, num_jobs))
    model = np.where(gpus > 1, rng.choice(MULTI_GPU_MODELS, num_jobs), rng.choice(MODELS, num_jobs))
    return make_trace(pd.DataFrame({"submit_time": submit, "duration": minutes * 60.0, "num_gpus": gpus,
                                    "model": model}))


def spanning_workload(seed: int, n: int) -> pd.DataFrame:
    """CASSINI's setting: communication-heavy gangs of 6, 8 and 10 GPUs (spanning 4-GPU nodes)
    mixed with small ResNet-50 jobs; Poisson arrivals 300 s apart, 0.5-2 h jobs."""
    from traces import make_trace

    rng = np.random.default_rng(seed)
    rows, t = [], 0.0
    for _ in range(n):
        if rng.random() < 0.6:
            rows.append((t, float(rng.uniform(1800, 7200)), int(rng.choice([6, 8, 10])),
                         str(rng.choice(("lm", "resnet18", "transformer")))))
        else:
            rows.append((t, float(rng.uniform(1800, 7200)), int(rng.choice([1, 2, 3])), "resnet50"))
        t += rng.exponential(300.0)
    return make_trace(pd.DataFrame(rows, columns=["submit_time", "duration", "num_gpus", "model"]))


def _pollux_workload6(s: dict) -> pd.DataFrame:
    from traces import pollux

    w = pollux.load_workload(_shared("reference", "pollux", "workloads", "workload-6.csv"))
    return w if s["jobs"] is None else w.head(s["jobs"]).reset_index(drop=True)


def _mix():
    from traces import clusters

    return clusters.from_counts("v100-p100-k80", [("v100", 2, 4, 32, 244), ("p100", 2, 4, 32, 244),
                                                  ("k80", 2, 4, 32, 244)])


# --- the rows' experiments
def _run_ordering(s: dict, _: dict) -> list[Measure]:
    jct = {n: [] for n in ("fifo", "sjf", "srtf")}
    for w in philly_windows(s):
        for n in jct:
            jct[n].append(_metrics(w, "small", n)["avg_jct"])
    return [factor("SJF vs FIFO, avg JCT", jct["fifo"], jct["sjf"], None, ties_hold=True),
            factor("SRTF vs SJF, avg JCT", jct["sjf"], jct["srtf"], None, ties_hold=True)]


def _run_tiresias(s: dict, _: dict) -> list[Measure]:
    fifo, tir = [], []
    for w in philly_windows(s):
        fifo.append(_metrics(w, "small", "fifo")["avg_jct"])
        tir.append(_metrics(w, "small", "tiresias")["avg_jct"])
    return [factor("Tiresias vs FIFO (YARN-CS), avg JCT", fifo, tir, 5.5)]


def _run_gandiva(s: dict, _: dict) -> list[Measure]:
    fifo, gan = [], []
    for w in philly_windows(s):
        fifo.append(_metrics(w, "small", "fifo"))
        gan.append(_metrics(w, "small", "gandiva"))
    return [factor("Gandiva vs FIFO, GPU utilisation", [m["utilization"] for m in fifo],
                   [m["utilization"] for m in gan], 1.26, higher_is_better=True),
            factor("Gandiva vs FIFO, avg queueing delay", [m["avg_queueing_delay"] for m in fifo],
                   [m["avg_queueing_delay"] for m in gan], None)]


def _run_themis(s: dict, _: dict) -> list[Measure]:
    rho = {n: [] for n in ("fifo", "tiresias", "themis")}
    for w in philly_windows(s):
        for n in rho:
            rho[n].append(_metrics(w, "small", n)["max_rho"])
    return [factor("Themis vs Tiresias, max rho", rho["tiresias"], rho["themis"], 2.25),
            factor("Themis vs FIFO, max rho", rho["fifo"], rho["themis"], None)]


def _run_optimus(s: dict, _: dict) -> list[Measure]:
    from traces import synthetic

    res = {n: [] for n in ("gavel_agnostic", "optimus")}
    for seed in s["seeds"]:
        tr = synthetic(s["jobs"], load=1.0, cluster="tiny", seed=seed, duration_range=(10, 86400), max_gpus=4)
        for n in res:
            res[n].append(_metrics(tr, "tiny", n, elastic_fraction=1.0))
    base, opt = res["gavel_agnostic"], res["optimus"]
    return [factor("Optimus vs max-min fair shares, avg JCT", [m["avg_jct"] for m in base],
                   [m["avg_jct"] for m in opt], 2.39),
            factor("Optimus vs max-min fair shares, makespan", [m["makespan"] for m in base],
                   [m["makespan"] for m in opt], 1.63)]


def _run_gavel(s: dict, _: dict) -> list[Measure]:
    mix = _mix()
    aware, agnostic = [], []
    for seed in s["seeds"]:
        tr = gavel_workload(s["jobs"], 2.0, seed)
        aware.append(_metrics(tr, mix, "gavel")["avg_jct"])
        agnostic.append(_metrics(tr, mix, "gavel_agnostic")["avg_jct"])
    return [factor("heterogeneity-aware vs agnostic LAS, avg JCT", agnostic, aware, 3.5)]


def _run_pollux(s: dict, _: dict) -> list[Measure]:
    w6 = _pollux_workload6(s)
    jct = {
        "pollux": _metrics(w6, "pollux", "pollux")["avg_jct"],
        "tiresias": _metrics(w6, "pollux", "tiresias",
                             knobs=dict(thresholds=[57600.0], round_length=60.0, preempt="round"))["avg_jct"],
        "optimus": _metrics(w6, "pollux", "optimus", knobs=dict(interval=60.0))["avg_jct"],
    }
    order = jct["pollux"] < jct["tiresias"] < jct["optimus"]
    return [seconds("Pollux, avg JCT (s)", [jct["pollux"]], 2446.0, order),
            seconds("Tiresias+TunedJobs, avg JCT (s)", [jct["tiresias"]], 3470.0, order),
            seconds("Optimus+Oracle, avg JCT (s)", [jct["optimus"]], 5302.0, order),
            factor("Pollux vs Tiresias+TunedJobs, avg JCT", [jct["tiresias"]], [jct["pollux"]], 3470.0 / 2446.0),
            factor("Pollux vs Optimus+Oracle, avg JCT", [jct["optimus"]], [jct["pollux"]], 5302.0 / 2446.0)]


def _run_sia(s: dict, _: dict) -> list[Measure]:
    from envs.goodput import SIA_RESTART
    from traces import clusters

    spec = clusters.from_counts("sia-mix", [("t4", 6, 4, 32, 256), ("k80", 3, 8, 64, 512), ("v100", 2, 8, 64, 512)])
    w6 = _pollux_workload6(s)
    jct = {n: _metrics(w6, spec, n, restart=SIA_RESTART)["avg_jct"] for n in ("sia", "pollux", "gavel")}
    return [factor("Sia vs Pollux, avg JCT", [jct["pollux"]], [jct["sia"]], (1.0 / 0.7, 1.0 / 0.07)),
            factor("Sia vs Gavel, avg JCT", [jct["gavel"]], [jct["sia"]], (1.0 / 0.7, 1.0 / 0.07))]


def _run_lyra(s: dict, _: dict) -> list[Measure]:
    from traces import synthetic

    res = {n: [] for n in ("lyra", "sjf")}
    for seed in s["seeds"]:
        tr = synthetic(s["jobs"], load=1.0, cluster="tiny", seed=seed, duration_range=(10, 86400), max_gpus=4)
        for n in res:
            res[n].append(_metrics(tr, "tiny", n, elastic_fraction=1.0))
    return [factor("Lyra vs non-elastic SJF, avg JCT", [m["avg_jct"] for m in res["sjf"]],
                   [m["avg_jct"] for m in res["lyra"]], 1.48),
            factor("Lyra vs non-elastic SJF, avg queueing delay", [m["avg_queueing_delay"] for m in res["sjf"]],
                   [m["avg_queueing_delay"] for m in res["lyra"]], 1.53)]


def _run_heet(s: dict, _: dict) -> list[Measure]:
    from traces import synthetic

    mix = _mix()
    jct = {n: [] for n in ("heet", "heet_agnostic", "optimus", "lyra")}
    for seed in s["seeds"]:
        tr = synthetic(s["jobs"], load=1.5, cluster=mix, seed=seed, duration_range=(10, 86400), max_gpus=4)
        for n in jct:
            name, knobs = ("heet", {"heterogeneity_aware": False}) if n == "heet_agnostic" else (n, {})
            jct[n].append(_metrics(tr, mix, name, knobs=knobs, elastic_fraction=1.0)["avg_jct"])
    return [factor("Heet vs Lyra, avg JCT", jct["lyra"], jct["heet"], 2.46),
            factor("Heet vs Optimus (elastic), avg JCT", jct["optimus"], jct["heet"], None),
            factor("Heet vs its heterogeneity-agnostic twin, avg JCT", jct["heet_agnostic"], jct["heet"], None)]


def _run_shockwave(s: dict, _: dict) -> list[Measure]:
    from traces import clusters

    tacc = clusters.homogeneous(4, 8, name="tacc-32")
    res = {n: [] for n in ("shockwave", "gavel")}
    for seed in s["seeds"]:
        tr = shockwave_trace(s["jobs"], seed)
        for n in res:
            res[n].append(_metrics(tr, tacc, n, dynamic_fraction=1.0))
    sw, gv = res["shockwave"], res["gavel"]
    return [factor("Shockwave vs Gavel-LAS, unfair fraction (rho > 1)", [m["unfair_fraction"] for m in gv],
                   [m["unfair_fraction"] for m in sw], 0.25 / 0.05),
            factor("Shockwave vs Gavel-LAS, makespan", [m["makespan"] for m in gv], [m["makespan"] for m in sw],
                   33208.0 / 24197.0)]


def _run_synergy(s: dict, _: dict) -> list[Measure]:
    from traces import clusters

    spec = clusters.homogeneous(4, 8, cpus=24, mem_gb=500, name="synergy-4x8")
    res = {n: [] for n in ("synergy", "synergy_proportional")}
    for seed in s["seeds"]:
        tr = cpu_heavy_trace(s["jobs"], 1.0, seed, spec)
        for n in res:
            res[n].append(_metrics(tr, spec, n, resources=True)["avg_jct"])
    return [factor("Synergy-TUNE vs GPU-proportional CPUs, avg JCT", res["synergy_proportional"], res["synergy"], 3.4)]


def _run_lucid(s: dict, _: dict) -> list[Measure]:
    from traces import clusters

    c16 = clusters.homogeneous(2, 8, name="c16")
    res = {n: [] for n in ("lucid", "tiresias")}
    for seed in s["seeds"]:
        tr = lucid_small_jobs(s["jobs"], seed)
        for n in res:
            res[n].append(_metrics(tr, c16, n, known_durations=False)["avg_jct"])
    return [factor("Lucid vs Tiresias, avg JCT", res["tiresias"], res["lucid"], 1.3)]


def _run_cassini(s: dict, _: dict) -> list[Measure]:
    from traces import clusters

    spec = clusters.homogeneous(8, 4, name="8x4")
    res = {n: [] for n in ("themis", "cassini")}
    for seed in s["seeds"]:
        tr = spanning_workload(seed, s["jobs"])
        for n in res:
            res[n].append(_metrics(tr, spec, n, network=True)["avg_jct"])
    return [factor("CASSINI vs its host (Themis, consolidate-first), avg JCT", res["themis"], res["cassini"], 1.6)]


def _run_blox(s: dict, options: dict) -> list[Measure]:
    """The ``blox`` suite through the leaderboard runner (cached cells), LAS against LAS with
    spread placement on the same windows, loads and seeds."""
    import tempfile

    from leaderboard.runner import run
    from leaderboard.suite import load_suite

    suite = dataclasses.replace(load_suite("blox"), seeds=list(s["seeds"]), loads=list(s["loads"]))
    out = options.get("suite_out")
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(suite, policies=["las", "las_spread"], out=Path(out or tmp) / "blox", num_jobs=s["jobs"],
                      workers=1, progress=False)
        if summary.failed:
            raise RuntimeError(f"blox suite: {len(summary.failed)} cell(s) failed: {summary.failed[0][1]}")
        cells = pd.read_csv(summary.out / "cells.csv")
    keys = ["window", "load", "seed"]
    las = cells[cells["policy"] == "las"].set_index(keys)["avg_jct"]
    spread = cells[cells["policy"] == "las_spread"].set_index(keys)["avg_jct"].reindex(las.index)
    return [factor("LAS consolidated vs LAS spread placement, avg JCT", spread.to_numpy(), las.to_numpy(), None)]


def _agent_setting(agent_dir: Path) -> dict:
    """The training run's cluster, load and window size (``args.json`` beside ``agent/``),
    train.py's defaults where it is absent."""
    setting = {"cluster": "tiny", "load": 1.0, "num_jobs": 64}
    args = agent_dir.parent / "args.json"
    if args.is_file():
        saved = json.loads(args.read_text())
        for k in setting:
            if saved.get(k) is not None:
                setting[k] = saved[k]
    return setting


def _run_agent(s: dict, options: dict) -> list[Measure]:
    agent = options.get("agent")
    if not agent:
        raise NotRun("no agent given (--agent DIR, the agent/ folder of a train.py run)")
    from agents import AgentPolicy
    from envs import simulate
    from traces import synthetic

    agent_dir = Path(agent)
    setting = _agent_setting(agent_dir)
    policy = AgentPolicy(agent_dir)
    baseline = "srtf" if policy.needs_durations else "tiresias"
    base, ours = [], []
    for seed in s["seeds"]:  # fresh synthetic traces: seeds the training trace (seed 0) never used
        tr = synthetic(setting["num_jobs"], load=setting["load"], cluster=setting["cluster"], seed=seed)
        base.append(_metrics(tr, setting["cluster"], baseline)["avg_jct"])
        ours.append(simulate(tr, setting["cluster"], policy, known_durations=policy.needs_durations).metrics["avg_jct"])
    return [factor(f"agent vs {baseline} ({'clairvoyant' if policy.needs_durations else 'non-clairvoyant'} track), "
                   "avg JCT", base, ours, None)]


_PHILLY = ("traces", "philly", "pollux_philly.csv.gz")
_POLLUX = ("reference", "pollux", "workloads", "workload-6.csv")
_WINDOWS_TEXT = ("{n_windows} window(s) of {jobs} consecutive jobs (<= 16 GPUs) of the Pollux Philly trace "
                 "starting at {starts_label} s, rescaled to offered load 2 on 8 x 8 V100")


def _windows(starts: Sequence[float], jobs: int) -> dict:
    return {"starts": list(starts), "jobs": jobs, "n_windows": len(starts),
            "starts_label": ", ".join(f"{x:.3g}" for x in starts)}


ROWS: tuple[Row, ...] = (
    Row("ordering", "textbook (as Tiresias' simulator runs them)",
        "with known durations on a heavy-tailed trace, SRTF <= SJF <= FIFO in average JCT", "none (textbook)",
        _run_ordering, {"small": _windows([2.5e6], 300), "full": _windows([2.5e6, 5.5e6, 8.5e6], 300)},
        _WINDOWS_TEXT, needs=(_PHILLY,)),
    Row("tiresias", "Tiresias (NSDI'19)", "without durations, far lower average JCT than YARN-CS FIFO",
        "up to 5.5x", _run_tiresias,
        {"small": _windows([2.5e6], 300), "full": _windows([2.5e6, 5.5e6, 8.5e6], 300)}, _WINDOWS_TEXT,
        reason="5.5x is the paper's best case (testbed and its own trace); FIFO's JCT on a window depends on "
               "how long a large gang blocks the head of the queue", needs=(_PHILLY,)),
    Row("gandiva", "Gandiva (OSDI'18)", "time-slicing raises utilisation and cuts queueing",
        "+26% utilisation (180-GPU cluster)", _run_gandiva,
        {"small": _windows([2.5e6], 300), "full": _windows([2.5e6, 5.5e6, 8.5e6], 300)}, _WINDOWS_TEXT,
        reason="the paper's gain comes from packing and migration on its production workload; here Gandiva "
               "time-slices gangs without packing, on windows FIFO already keeps busy", needs=(_PHILLY,)),
    Row("themis", "Themis (NSDI'20)", "finish-time-fairness auctions give a lower maximum rho",
        "> 2.25x lower max rho", _run_themis,
        {"small": _windows([2.5e6], 300), "full": _windows([2.5e6, 3.5e6, 4.5e6], 300)}, _WINDOWS_TEXT,
        reason="the paper's baselines (Gandiva, Tiresias, Optimus, SLAQ) and trace differ; our Themis is the "
               "greedy worst-rho-first approximation of its partial-allocation auction", needs=(_PHILLY,)),
    Row("optimus", "Optimus (EuroSys'18)", "marginal-gain elastic allocation lowers JCT and makespan against "
        "fair sharing", "2.39x JCT, 1.63x makespan (vs DRF)", _run_optimus,
        {"small": {"seeds": [1], "jobs": 40}, "full": {"seeds": [1, 2, 3], "jobs": 100}},
        "synthetic Philly-like traces of {jobs} jobs (<= 4 GPUs, every scalable job elastic, bounds [1, 2 x "
        "request]) at load 1 on the 8-GPU tiny cluster, seeds {seeds}; baseline: max-min fair GPU shares "
        "(gavel_agnostic, DRF with GPUs as the only resource)",
        reason="the paper compares parameter-server jobs on CPU and GPU servers with DRF and Tetris; here GPU "
               "gangs with a per-model scaling curve, against max-min fair GPU shares"),
    Row("gavel", "Gavel (OSDI'20)", "heterogeneity-aware LAS beats its heterogeneity-agnostic twin",
        "up to 3.5x", _run_gavel, {"small": {"seeds": [0], "jobs": 30}, "full": {"seeds": [0, 1, 2, 3, 4], "jobs": 60}},
        "Gavel's workload generator, {jobs} jobs at 2 per hour, on 8 V100 + 8 P100 + 8 K80, seeds {seeds}",
        reason="3.5x is Gavel's best objective and load; a run of Gavel's own simulator at this load gave 1.34x"),
    Row("pollux", "Pollux (OSDI'21)", "on workload 6, Pollux < Tiresias+TunedJobs < Optimus+Oracle in average "
        "JCT (37-50% lower than both over the paper's workloads)", "2,446 / 3,470 / 5,302 s (artifact README)", _run_pollux,
        {"small": {"jobs": 40}, "full": {"jobs": None}},
        "Pollux artifact workload 6 ({jobs_label}) as goodput jobs on 16 x 4 T4, 30 s restarts; Tiresias with "
        "two queues split at 16 GPU-hours, 60 s rounds; Optimus 60 s intervals; one run (deterministic)",
        reason="the artifact's Pollux searches with a stochastic genetic algorithm; ours solves the same "
               "objective by an exact knapsack", needs=(_POLLUX,)),
    Row("sia", "Sia (SOSP'23)", "heterogeneity-aware goodput ILP beats Pollux and Gavel on a 3-type cluster",
        "30-93% lower avg JCT (1.43-14.3x)", _run_sia, {"small": {"jobs": 40}, "full": {"jobs": None}},
        "Pollux artifact workload 6 ({jobs_label}) on 6 x 4 T4 + 3 x 8 K80 + 2 x 8 V100 with Sia's restart "
        "delay per application; one run (deterministic)",
        reason="the slower and faster types are K80 and V100 (the types with measured speeds) rather than "
               "2080Ti and A100", needs=(_POLLUX,)),
    Row("lyra", "Lyra (EuroSys'23)", "elastic scaling with capacity loaning lowers JCT and queueing",
        "1.48x JCT, 1.53x queueing", _run_lyra,
        {"small": {"seeds": [1], "jobs": 40}, "full": {"seeds": [1, 2, 3], "jobs": 100}},
        "synthetic Philly-like traces of {jobs} jobs (<= 4 GPUs, every scalable job elastic) at load 1 on the "
        "8-GPU tiny cluster, seeds {seeds}; baseline: SJF at the requested GPU counts",
        reason="the paper's gains are on ByteDance's 15-day trace with loaned inference servers; here one "
               "training pool and synthetic Philly-like jobs"),
    Row("heet", "Heet (ASPLOS'24)", "heterogeneity-aware elastic bundles lower JCT against elastic baselines",
        "up to 2.46x", _run_heet, {"small": {"seeds": [1], "jobs": 30}, "full": {"seeds": [1, 2, 3], "jobs": 80}},
        "synthetic Philly-like traces of {jobs} jobs (<= 4 GPUs, every scalable job elastic) at load 1.5 on "
        "8 V100 + 8 P100 + 8 K80, seeds {seeds}",
        reason="the paper's baselines (AFS, ElasticFlow, Lyra, Themis) and cloud cluster differ; its profiling "
               "by collaborative filtering is replaced by the known throughput table"),
    Row("shockwave", "Shockwave (NSDI'23)", "fewer unfair jobs (rho > 1) than Gavel's max-min fairness and a "
        "shorter makespan, with dynamically adapting jobs", "5% vs 25% unfair; makespan 24,197 vs 33,208 s",
        _run_shockwave, {"small": {"seeds": [2], "jobs": 40}, "full": {"seeds": [0, 1, 2, 3, 4, 5], "jobs": 120}},
        "the artifact's generator, {jobs} jobs 40 s apart, every job adapting its batch size, on 4 x 8 V100 "
        "with 30 s restarts, seeds {seeds}",
        reason=f"see [{GAPS_DOC}]({GAPS_DOC})"),
    Row("synergy", "Synergy (OSDI'22)", "CPU- and memory-aware TUNE lowers JCT against GPU-proportional CPUs",
        "up to 3.4x", _run_synergy, {"small": {"seeds": [0], "jobs": 40}, "full": {"seeds": [0, 1], "jobs": 100}},
        "{jobs} Philly-like jobs, mostly CPU-sensitive models, at load 1 on 4 x 8 V100 with 24 CPUs and 500 GB "
        "per server (CPU/memory model on), LAS admission, seeds {seeds}",
        reason=f"see [{GAPS_DOC}]({GAPS_DOC})"),
    Row("lucid", "Lucid (ASPLOS'23)", "packing jobs that share well lowers JCT against Tiresias",
        "up to 1.3x", _run_lucid, {"small": {"seeds": [0], "jobs": 40}, "full": {"seeds": [0, 1], "jobs": 120}},
        "{jobs} mostly small recurring jobs at 24 per hour on 2 x 8 V100, durations hidden, seeds {seeds}",
        reason="Tiresias here uses the project's defaults (preempts at every event), not Lucid's configuration"),
    Row("cassini", "CASSINI (NSDI'24)", "network-aware placement and time shifts lower JCT against its host's "
        "placement", "up to 1.6x", _run_cassini,
        {"small": {"seeds": [0], "jobs": 15}, "full": {"seeds": [0, 1, 2, 3, 4], "jobs": 40}},
        "{jobs} jobs, 60% communication-heavy gangs of 6-10 GPUs, on 8 x 4 V100 with the network contention "
        "model, seeds {seeds}",
        reason="the paper's 1.6x is its best case on a 24-server testbed with 13 models and Themis or Pollux "
               "hosts; here a synthetic mix on 8 x 4 GPUs where 40% of the jobs are small and never span nodes"),
    Row("blox", "Blox (EuroSys'24)", "for a fixed scheduler (LAS), the placement part changes JCT: consolidated "
        "gangs beat scattered ones", "none (a toolkit; no JCT figure in our notes)", _run_blox,
        {"small": {"seeds": [0], "loads": [2.0], "jobs": 100},
         "full": {"seeds": [0, 1, 2], "loads": [2.0, 4.0], "jobs": 1000}},
        "the blox leaderboard suite: synthetic Philly-like traces of {jobs} jobs on 8 x 8 V100 at loads "
        "{loads}, seeds {seeds}; LAS with the core's consolidate-first placement against LAS composed with "
        "spread placement"),
    Row("agent", "learned agent (this project)", "a trained agent beats the best classic baseline of its track",
        "none", _run_agent, {"small": {"seeds": [101]}, "full": {"seeds": list(range(101, 111))}},
        "fresh synthetic traces (seeds {seeds}) of the training run's window size and load on its cluster "
        "(args.json beside agent/); baseline Tiresias (non-clairvoyant agent) or SRTF (clairvoyant)"),
)


def row_names() -> list[str]:
    return [r.name for r in ROWS]


def get_row(name: str) -> Row:
    for r in ROWS:
        if r.name == name:
            return r
    raise ValueError(f"unknown reproduction row {name!r}; rows are {', '.join(row_names())}")


for _r in ROWS:  # the label the setting texts use for a workload's job count
    for _s in _r.settings.values():
        if "jobs" in _s:
            _s.setdefault("jobs_label", "all 160 jobs" if _s["jobs"] is None else f"its first {_s['jobs']} jobs")


# ------------------------------------------------------------------------------------ running
@dataclass
class RowResult:
    """What one row gave: its measures, or why it did not run (``error``)."""

    name: str
    scale: str
    measures: list[Measure] = field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0


def run_row(name: str, scale: str, options: dict | None = None) -> RowResult:
    """Run one row (in this process); a row that cannot run here is returned with ``error``."""
    import time

    row = get_row(name)
    t0 = time.perf_counter()
    try:
        measures = row.run(scale, options)
        return RowResult(name, scale, measures, None, time.perf_counter() - t0)
    except NotRun as exc:
        return RowResult(name, scale, [], f"not run: {exc}", time.perf_counter() - t0)


def reproduce(scale: str = "full", *, rows: Sequence[str] | None = None, agent: str | Path | None = None,
              workers: int = 1, progress: bool = False, suite_out: Path | None = None) -> list[RowResult]:
    """Run ``rows`` (default: every row) at ``scale``, ``workers`` rows at a time; results in
    row order."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    names = list(rows) if rows else row_names()
    for n in names:
        get_row(n)
    options = {"agent": str(Path(agent).resolve()) if agent else None,
               "suite_out": str(suite_out) if suite_out else None}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(names), desc=f"reproduce ({scale})", unit="row", disable=not progress, dynamic_ncols=True)
    results: dict[str, RowResult] = {}
    try:
        if workers <= 1 or len(names) == 1:
            for n in names:
                bar.set_postfix_str(n, refresh=True)
                results[n] = run_row(n, scale, options)
                bar.update(1)
        else:
            import multiprocessing
            import os
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

            from leaderboard.runner import _init_worker

            pool = ProcessPoolExecutor(max_workers=min(workers, len(names)),
                                       mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                       initargs=(os.getpid(),))
            try:
                pending = {pool.submit(run_row, n, scale, options): n for n in names}
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        n = pending.pop(f)
                        results[n] = f.result()
                        bar.set_postfix_str(n, refresh=False)
                        bar.update(1)
            except BaseException:  # Ctrl-C, SIGTERM, a failed row: stop the rows still running
                for p in list((getattr(pool, "_processes", None) or {}).values()):
                    p.terminate()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    finally:
        bar.close()
    return [results[n] for n in names]


# ------------------------------------------------------------------------------------ output
def fmt_paper(m: Measure) -> str:
    if m.paper is None:
        return "none"
    unit = "x" if m.kind == "factor" else " s"
    if isinstance(m.paper, tuple):
        return f"{_num(m.paper[0], m.kind)}-{_num(m.paper[1], m.kind)}{unit}"
    return f"{_num(m.paper, m.kind)}{unit}"


def _num(x: float, kind: str) -> str:
    if not math.isfinite(x):
        return "∞" if x > 0 else "n/a"
    return f"{x:,.0f}" if kind == "seconds" else f"{x:.2f}"


def fmt_ours(m: Measure) -> str:
    """``mean ± half`` with its unit and ``(n=…)``; the form :func:`parse_ours` reads back. An
    infinite factor (the policy's value is 0 in every run, e.g. no queueing at all) is ``∞``."""
    unit = "x" if m.kind == "factor" else " s"
    s = _num(m.ours, m.kind) + ("" if math.isinf(m.ours) else unit)
    if math.isfinite(m.half):
        s += f" ± {_num(m.half, m.kind)}"
    return s + f" (n={m.n})"


_OURS_RE = re.compile(r"^(?:(?P<mean>[0-9,.]+)(?:x| s)|∞)(?: ± (?P<half>[0-9,.]+))? \(n=(?P<n>\d+)\)$")


def parse_ours(text: str) -> tuple[float, float, int]:
    """Inverse of :func:`fmt_ours` (to the printed precision): ``(mean, half, n)``."""
    m = _OURS_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a reproduction figure: {text!r}")
    mean = math.inf if m["mean"] is None else float(m["mean"].replace(",", ""))
    half = float(m["half"].replace(",", "")) if m["half"] else math.nan
    return mean, half, int(m["n"])


def frame(results: Sequence[RowResult]) -> pd.DataFrame:
    """One line per measure (a row that did not run: one line with its reason)."""
    lines = []
    for res in results:
        row = get_row(res.name)
        base = {"row": row.name, "paper": row.paper, "claim": row.claim, "setting": row.describe(res.scale),
                "command": row.command(res.scale)}
        if res.error:
            lines.append({**base, "measure": "", "paper_figure": row.paper_figure, "kind": "", "ours": math.nan,
                          "ci95_half": math.nan, "n": 0, "ratio": math.nan, "verdict": res.error, "reason": ""})
            continue
        for m in res.measures:
            v = m.verdict
            lines.append({**base, "measure": m.label, "paper_figure": fmt_paper(m), "kind": m.kind, "ours": m.ours,
                          "ci95_half": m.half, "n": m.n, "ratio": m.ratio, "verdict": v,
                          "reason": row.reason if v != "holds" else ""})
    return pd.DataFrame(lines, columns=["row", "paper", "claim", "measure", "paper_figure", "kind", "ours",
                                        "ci95_half", "n", "ratio", "verdict", "reason", "command", "setting"])


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown(results: Sequence[RowResult], scale: str, *, agent: str | None = None) -> str:
    """The report: a header (scale, rules), one table line per measure, then each row's setting."""
    from leaderboard.suite import code_digest, package_version

    counts = {v: 0 for v in VERDICTS}
    for res in results:
        for m in res.measures:
            counts[m.verdict] += 1
    not_run = [r for r in results if r.error]
    lines = [
        "# Reproduction of the papers' headline claims", "",
        f"Generated by `python -m leaderboard reproduce --scale {scale}"
        + (" --agent AGENT_DIR" if agent else "") + "`" + (
            " with AGENT_DIR the `agent/` folder of a default `python train.py` run" if agent else "")
        + f" (scale **{scale}**; clustergym {package_version()}, "
        f"source {code_digest()[:12]}). Each row reruns one paper's headline comparison in its own setting, "
        "listed under the table; the command of a row reruns it alone.", "",
        "- A row's paper, claim and reason are written on its first line only.",
        "- **ours**: the mean over the runs (windows x seeds) ± the half-width of its 95% confidence interval "
        "(Student t; none for one run), n = number of runs. A factor is how many times better the claimed "
        "policy is than its baseline on the same trace (per-run ratio; 1 = no difference; for utilisation the "
        "ratio of utilisations).",
        "- **ratio**: for a factor, our gain over the paper's, (ours - 1) / (paper's - 1), so that 1.05x "
        "against a paper's 1.3x is 0.17; for seconds, ours / the paper's. For a range, to its nearest end "
        "(1.00 inside it).",
        f"- **verdict**: *holds* when our run agrees with the paper's direction and the ratio is within "
        f"1 ± {TOLERANCE:.2f}; *holds in direction* when it agrees but the magnitude differs "
        "(or the paper gives no figure); *does not hold* when our run contradicts it.",
        f"- tally: {counts['holds']} hold, {counts['holds in direction']} hold in direction, "
        f"{counts['does not hold']} do not hold" + (f"; {len(not_run)} row(s) not run" if not_run else "") + ".",
        "",
        "| paper | claim | measure | paper's figure | ours | ratio | verdict | reason where magnitude differs | "
        "command |",
        "|:---|:---|:---|---:|---:|---:|:---|:---|:---|",
    ]
    df = frame(results)
    last_row, said = None, {}
    for _, r in df.iterrows():
        res = next(x for x in results if x.name == r["row"])
        if res.error:
            ours, rat = "", ""
        else:
            m = next(x for x in res.measures if x.label == r["measure"])
            ours, rat = fmt_ours(m), ("n/a" if not math.isfinite(m.ratio) else f"{m.ratio:.2f}")
        if r["row"] != last_row:
            last_row, said = r["row"], {}
        shown = {}
        for k in ("paper", "claim", "reason"):  # each said once per row
            v = str(r[k])
            shown[k] = "" if said.get(k) == v else v
            if v:
                said[k] = v
        lines.append("| " + " | ".join(_cell(x) for x in (
            shown["paper"], shown["claim"], str(r["measure"]), str(r["paper_figure"]), ours, rat, str(r["verdict"]),
            shown["reason"], f"`{r['command']}`")) + " |")
    lines += ["", "## Settings", ""]
    for res in results:
        row = get_row(res.name)
        lines.append(f"- **{row.name}** ({row.paper}): {row.describe(res.scale)}.")
    lines.append("")
    return "\n".join(lines)


def write(results: Sequence[RowResult], scale: str, out: Path, *, agent: str | None = None) -> list[Path]:
    """Write ``REPRODUCTION.md`` and ``reproduction.csv`` into ``out``."""
    from leaderboard.report import _csv, _write_bytes

    out.mkdir(parents=True, exist_ok=True)
    return [_write_bytes(out / "REPRODUCTION.md", markdown(results, scale, agent=agent).encode()),
            _write_bytes(out / "reproduction.csv", _csv(frame(results)))]


def parse_markdown(text: str) -> list[dict]:
    """The table lines of a written report as dicts (``ours`` parsed with :func:`parse_ours`)."""
    rows = []
    header = None
    for line in text.splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = cells
            continue
        d = dict(zip(header, cells, strict=True))
        d["parsed"] = parse_ours(d["ours"]) if d["ours"] else None
        rows.append(d)
    return rows
