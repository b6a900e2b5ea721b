"""Pictures of a whole-trace replay: GPUs busy and jobs queued over time, and a Gantt chart.

:func:`envs.simulate` returns per-job results (submit, first start, finish, GPUs at the last
start, GPU-seconds, preemption counts) but not when each job ran: a preempted job's running
intervals and the nodes it ran on are not in its result. :class:`TimelineRecorder` wraps a
policy and records them from the simulator's public view at every event, changing nothing in
the replay; :func:`simulate_with_timeline` runs :func:`envs.simulate` with it and stores the
intervals in ``result.info["timeline"]`` (:data:`SEGMENT_COLUMNS`). :func:`plot_timeline`
draws a result with or without them; without them each job is taken to run once, on
``gpus_last`` GPUs from its first start to its finish (exact only for policies that never
preempt or resize).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from envs.policy import Allocation, ClusterView, Policy, Priority
from envs.render import job_color
from envs.simulate import SimulationResult, simulate

#: one row per interval during which a job held the same GPUs: ``job`` (position in the
#: workload, the row of ``result.jobs``), ``start``, ``end`` (s), ``gpus``, ``gpu_type``
#: (index, -1 unknown), ``nodes`` (tuple of node indices, empty when unknown), ``guest``
#: (ran on another job's GPUs)
SEGMENT_COLUMNS = ("job", "start", "end", "gpus", "gpu_type", "nodes", "guest")
#: the most jobs drawn as a Gantt chart
GANTT_MAX_JOBS = 200
UNKNOWN_COLOR = "tab:cyan"


class TimelineRecorder(Policy):
    """Runs ``policy`` unchanged and records, at every event, which jobs hold which GPUs.

    The driver asks for a decision after every event; the running set then seen holds from the
    previous event on (time moves only between decisions). A job that finishes at an event is
    no longer in the view: its last interval keeps the allocation seen last (its GPU count from
    the result's ``gpus_last`` when it was never seen running). :meth:`segments` builds the
    intervals once the replay is over.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.name = policy.name
        self.round_length = policy.round_length
        self.needs_durations = policy.needs_durations
        self._view: ClusterView | None = None
        self._snaps: list[tuple[float, dict[int, tuple]]] = []

    def __getattr__(self, name: str) -> Any:
        policy = self.__dict__.get("policy")
        if policy is None:
            raise AttributeError(name)
        return getattr(policy, name)

    @property
    def view(self) -> ClusterView | None:
        """The view of the replay being recorded (``None`` before it starts)."""
        return self._view

    def reset(self, view: ClusterView) -> None:
        self._view = view
        self._snaps = []
        self.policy.reset(view)

    def prepare(self, view: ClusterView) -> None:
        self._record(view)
        self.policy.prepare(view)

    def decide(self, view: ClusterView) -> Priority | Allocation | None:
        return self.policy.decide(view)

    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        return self.policy.plan(view)

    def _record(self, view: ClusterView) -> None:
        run = np.flatnonzero(view.running[0])
        rows, nodes = np.nonzero(np.asarray(view.placement[0])[run])
        job, n, t, guest = (np.asarray(a[0])[run] for a in (view.job, view.allocated, view.gpu_type, view.guest))
        where: dict[int, list[int]] = {}
        for r, node in zip(rows.tolist(), nodes.tolist(), strict=True):
            where.setdefault(r, []).append(node)
        snap = {int(job[r]): (int(n[r]), int(t[r]), tuple(where.get(r, ())), bool(guest[r])) for r in range(len(run))}
        self._snaps.append((float(view.clock[0]), snap))

    def segments(self, jobs: pd.DataFrame) -> pd.DataFrame:
        """The running intervals of the replay (:data:`SEGMENT_COLUMNS`), given its per-job
        results ``jobs`` (``result.jobs``: finish times and ``gpus_last``)."""
        if self._view is None:
            raise RuntimeError("TimelineRecorder.segments: the recorder has not run (pass it to envs.simulate)")
        if not self._snaps or self._snaps[-1][0] != float(self._view.clock[0]) or self._snaps[-1][1]:
            self._record(self._view)  # the state after the last event
        finish = jobs["finish"].to_numpy(np.float64)
        gpus_last = jobs["gpus_last"].to_numpy(np.int64)
        ends: dict[float, list[int]] = {}
        for j in np.flatnonzero(~np.isnan(finish)).tolist():
            ends.setdefault(float(finish[j]), []).append(j)
        out: list[tuple] = []
        open_: dict[int, list] = {}  # job -> [start, end, alloc]
        last: dict[int, tuple] = {}  # job -> allocation seen last
        (t_prev, _), *rest = self._snaps
        for t, snap in rest:
            was_open = set(open_)
            for j in was_open - set(snap):  # finished at t (ran until t) or taken off its GPUs at t_prev
                seg = open_.pop(j)
                if finish[j] == t:
                    seg[1] = t
                out.append((j, seg[0], seg[1], *seg[2]))
            for j in ends.get(t, ()):
                if j not in was_open:  # (re)started at t_prev and finished at t: never seen running
                    alloc = last.get(j)
                    if alloc is None or alloc[0] != gpus_last[j]:  # its count at the last start
                        alloc = (int(gpus_last[j]), -1, (), False)
                    out.append((j, t_prev, t, *alloc))
            for j, alloc in snap.items():
                last[j] = alloc
                seg = open_.get(j)
                if seg is not None and seg[2] == alloc:
                    seg[1] = t
                    continue
                if seg is not None:
                    out.append((j, seg[0], seg[1], *seg[2]))
                open_[j] = [t_prev, t, alloc]
            t_prev = t
        for j, seg in open_.items():
            out.append((j, seg[0], seg[1], *seg[2]))
        seg = pd.DataFrame(out, columns=list(SEGMENT_COLUMNS))
        seg = seg[seg["end"] > seg["start"]]
        return seg.sort_values(["job", "start"], kind="stable").reset_index(drop=True)


def simulate_with_timeline(trace: pd.DataFrame, cluster: Any, policy: Policy | str, **kwargs: Any) -> SimulationResult:
    """:func:`envs.simulate` with a :class:`TimelineRecorder` around ``policy``; the result's
    ``info["timeline"]`` holds the running intervals (:data:`SEGMENT_COLUMNS`) and
    ``info["gpu_types"]`` and ``info["total_gpus"]`` the cluster's GPU type names (what a
    ``gpu_type`` index means) and GPU count."""
    from envs.simulate import policy_by_name

    rec = TimelineRecorder(policy_by_name(policy) if isinstance(policy, str) else policy)
    result = simulate(trace, cluster, rec, **kwargs)
    result.info["timeline"] = rec.segments(result.jobs)
    result.info["gpu_types"] = tuple(rec.view.gpu_types)
    result.info["total_gpus"] = int(rec.view.total_gpus)
    return result


def segments_of(result: SimulationResult) -> tuple[pd.DataFrame, bool]:
    """The running intervals of ``result`` and whether they were recorded (else: one interval
    per finished job, first start to finish on ``gpus_last`` GPUs)."""
    seg = result.info.get("timeline")
    if seg is not None:
        return seg, True
    j = result.jobs
    done = ~j["finish"].isna()
    return pd.DataFrame({
        "job": np.flatnonzero(done.to_numpy()), "start": j["first_start"][done].to_numpy(np.float64),
        "end": j["finish"][done].to_numpy(np.float64), "gpus": j["gpus_last"][done].to_numpy(np.int64),
        "gpu_type": -1, "nodes": [()] * int(done.sum()), "guest": False,
    }), False


def _steps(times: np.ndarray, deltas: np.ndarray, start: float) -> tuple[np.ndarray, np.ndarray]:
    """A step function from +/- changes at ``times``: breakpoints ``t`` and values ``y``
    (``y[i]`` holds on ``[t[i], t[i + 1])``), starting at 0 at ``start``."""
    order = np.argsort(times, kind="stable")
    t, idx = np.unique(times[order], return_index=True)
    y = np.add.reduceat(deltas[order], idx).cumsum() if len(t) else np.zeros(0)
    return np.concatenate([[start], t]), np.concatenate([[0.0], y])


def busy_gpus(segments: pd.DataFrame, start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """GPUs held over time, a step function ``(t, y)`` (``y[i]`` on ``[t[i], t[i + 1])``); a
    job sharing another job's GPUs adds none."""
    own = segments[~segments["guest"].astype(bool)]
    g = own["gpus"].to_numpy(np.float64)
    return _steps(np.concatenate([own["start"].to_numpy(np.float64), own["end"].to_numpy(np.float64)]),
                  np.concatenate([g, -g]), start)


def queued_jobs(jobs: pd.DataFrame, segments: pd.DataFrame, start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Jobs waiting over time (submitted, not finished, holding no GPUs), a step function."""
    sub = jobs["submit"].to_numpy(np.float64)
    fin = jobs["finish"].to_numpy(np.float64)
    fin = fin[~np.isnan(fin)]
    times = np.concatenate([sub, fin, segments["start"].to_numpy(np.float64), segments["end"].to_numpy(np.float64)])
    deltas = np.concatenate([np.ones(len(sub)), -np.ones(len(fin)), -np.ones(len(segments)), np.ones(len(segments))])
    return _steps(times, deltas, start)


def integrate(t: np.ndarray, y: np.ndarray) -> float:
    """The integral of a step function ``(t, y)`` over ``[t[0], t[-1]]``."""
    return float((y[:-1] * np.diff(t)).sum())


def _time_unit(span: float) -> tuple[float, str]:
    for scale, name in ((86400.0, "days"), (3600.0, "hours"), (60.0, "minutes")):
        if span >= 3 * scale:
            return scale, name
    return 1.0, "seconds"


def plot_timeline(result: SimulationResult, path: str | Path | None = None, *, gantt_max_jobs: int = GANTT_MAX_JOBS,
                  size: tuple[float, float] = (10.0, 7.5), dpi: int = 100):
    """Draw a replay: (a) GPUs busy and (b) jobs queued over time as step plots and, for at
    most ``gantt_max_jobs`` jobs, (c) a Gantt chart with one row per job (waiting, running
    coloured by node, preempted). Saves a PNG of ``size`` inches at ``dpi`` to ``path`` if
    given; returns the matplotlib ``Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    jobs = result.jobs
    if len(jobs) == 0:
        raise ValueError("plot_timeline: the result has no jobs")
    seg, recorded = segments_of(result)
    t0 = float(jobs["submit"].min())
    end = float(np.nanmax(jobs["finish"].to_numpy(np.float64)))
    scale, unit = _time_unit(end - t0)
    gantt = len(jobs) <= gantt_max_jobs
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3 if gantt else 2, 1, sharex=True,
                        gridspec_kw={"height_ratios": [1, 1, 2.5] if gantt else [1, 1]})
    info = result.info
    total = info.get("total_gpus")
    title = f"{info.get('policy', 'policy')} on {info.get('cluster', 'cluster')}: {len(jobs)} jobs"
    if not recorded:
        title += " (intervals from the per-job table: preemptions not shown)"
    fig.suptitle(title, fontsize=11)

    t, y = busy_gpus(seg, t0)
    ax = axes[0]
    ax.step((t - t0) / scale, y, where="post", color="tab:blue", label="GPUs busy")
    if total:
        ax.axhline(total, color="0.4", ls="--", lw=1, label=f"cluster ({total} GPUs)")
    ax.set_ylabel("GPUs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("(a) GPUs busy", fontsize=9, loc="left")
    ax.legend(loc="upper right", fontsize=8)
    t, y = queued_jobs(jobs, seg, t0)
    ax = axes[1]
    ax.step((t - t0) / scale, y, where="post", color="tab:orange", label="jobs queued")
    ax.set_ylabel("jobs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("(b) jobs waiting for GPUs", fontsize=9, loc="left")
    ax.legend(loc="upper right", fontsize=8)
    if gantt:
        _gantt(axes[2], jobs, seg, t0, scale, recorded)
    axes[-1].set_xlabel(f"time since first submission ({unit})")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _gantt(ax, jobs: pd.DataFrame, seg: pd.DataFrame, t0: float, scale: float, recorded: bool) -> None:
    from matplotlib.patches import Patch

    n = len(jobs)
    submit = (jobs["submit"].to_numpy(np.float64) - t0) / scale
    first = (jobs["first_start"].to_numpy(np.float64) - t0) / scale
    fin = (jobs["finish"].to_numpy(np.float64) - t0) / scale
    h = 0.8
    # waiting for the first start
    ax.barh(np.arange(n), first - submit, left=submit, height=h, color="0.85", lw=0)
    node_sets = seg["nodes"].tolist()
    nodes = sorted({x for s in node_sets for x in s})
    by_node = len(nodes) <= 10
    colors = {}
    if by_node:
        colors = {x: job_color(2 * i) for i, x in enumerate(nodes)}
    single = "tab:blue" if not by_node else "0.15"
    run_color = [UNKNOWN_COLOR if not s else colors[s[0]] if by_node and len(s) == 1 else single if len(s) == 1
                 else "0.15" for s in node_sets]
    left = (seg["start"].to_numpy(np.float64) - t0) / scale
    width = (seg["end"].to_numpy(np.float64) - seg["start"].to_numpy(np.float64)) / scale
    ax.barh(seg["job"].to_numpy(), width, left=left, height=h, color=run_color, lw=0)
    # preempted: gaps between a job's running intervals
    g = seg.sort_values(["job", "start"], kind="stable")
    same = g["job"].to_numpy()[1:] == g["job"].to_numpy()[:-1]
    gap_l = g["end"].to_numpy(np.float64)[:-1][same]
    gap_r = g["start"].to_numpy(np.float64)[1:][same]
    gap_j = g["job"].to_numpy()[1:][same]
    real = gap_r > gap_l
    ax.barh(gap_j[real], (gap_r - gap_l)[real] / scale, left=(gap_l[real] - t0) / scale, height=h,
            color="white", edgecolor="tab:red", hatch="////", lw=0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_ylabel("job (submission order)")
    ax.set_title("(c) jobs: one row each", fontsize=9, loc="left")
    handles = [Patch(color="0.85", label="waiting for first start")]
    if by_node:
        handles += [Patch(color=colors[x], label=f"running on node {x}") for x in nodes]
    elif nodes:
        handles.append(Patch(color="tab:blue", label="running on one node"))
    if nodes:
        handles.append(Patch(color="0.15", label="running on several nodes"))
    if any(not s for s in node_sets):
        handles.append(Patch(color=UNKNOWN_COLOR, label="running (nodes not recorded)" if recorded
                             else "running (first start to finish)"))
    handles.append(Patch(facecolor="white", edgecolor="tab:red", hatch="////", label="preempted"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_xlim(left=min(0.0, float(np.nanmin(submit))), right=float(np.nanmax(fin)) * 1.01)
