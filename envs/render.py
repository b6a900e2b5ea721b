"""Pictures of one cluster's current state: a compact text view and an RGB image.

:func:`snapshot` reads a :class:`~envs.policy.ClusterView` (the simulator's public, read-only
accessors) into a :class:`ClusterState`; :func:`render_text` and :func:`render_rgb` draw it.
They back ``GpuClusterEnv.render()`` (``render_mode="ansi"`` and ``"rgb_array"``).

The simulator records how many GPUs of each node a job holds, not which ones: the cells of a
node are filled job by job in workload order (a job's cells are contiguous), free cells last.
A job sharing another job's GPUs (a guest) occupies no cell of its own; the running list names
its host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.policy import ClusterView

#: how many queued jobs the views list before summarising the rest as a count
QUEUE_SHOWN = 8
FREE = -1
"""Cell value of a free GPU in :attr:`ClusterState.cells`."""


@dataclass(frozen=True)
class RunningJob:
    job: int  # position in the env's workload (the id the views show)
    gpus: int  # GPUs held
    gpu_type: str
    nodes: tuple[int, ...]  # nodes its gang sits on
    attained: float  # GPU-seconds held so far
    remaining: float | None  # reference-seconds of work left (None: durations hidden)
    restarting: bool
    host: int | None  # the job whose GPUs it shares (None: its own GPUs)


@dataclass(frozen=True)
class QueuedJob:
    job: int
    gpus: int  # requested
    waited: float  # seconds since submission
    repick: bool  # taken off its GPUs for an open re-pick phase


@dataclass(frozen=True)
class ClusterState:
    """One env's state as the pictures show it."""

    clock: float
    gpu_types: tuple[str, ...]
    node_type: tuple[str, ...]  # GPU type of each node
    cells: tuple[tuple[int, ...], ...]  # per node, the job on each GPU (:data:`FREE`: none)
    running: tuple[RunningJob, ...]  # in workload order
    queue: tuple[QueuedJob, ...]  # every waiting job, in the order given to :func:`snapshot`
    jobs_done: int | None = None
    num_jobs: int | None = None

    @property
    def total_gpus(self) -> int:
        return sum(len(c) for c in self.cells)

    @property
    def free_gpus(self) -> int:
        return sum(c.count(FREE) for c in self.cells)


def snapshot(view: ClusterView, env: int = 0, *, order: np.ndarray | None = None,
             repick: np.ndarray | None = None, jobs_done: int | None = None,
             num_jobs: int | None = None) -> ClusterState:
    """The state of env ``env`` of ``view``.

    ``order``: slot indices in the order the queue is listed (e.g. the agent's visible slots);
    waiting jobs not in it follow, oldest first. ``repick``: ``(S,)`` slots that are re-pick
    candidates. ``jobs_done`` / ``num_jobs``: the episode's progress, shown when given.
    """
    status_run = np.asarray(view.running[env])
    waiting = np.asarray(view.waiting[env])
    job = np.asarray(view.job[env])
    place = np.asarray(view.placement[env])  # (S, N)
    guest = np.asarray(view.guest[env])
    partner = np.asarray(view.partner[env])
    cap = np.asarray(view.node_capacity)
    types = tuple(view.gpu_types)
    node_type = tuple(types[t] for t in np.asarray(view.node_type))
    remaining = np.asarray(view.remaining[env]) if view.known_durations else None
    restarting = np.asarray(view.restarting[env])

    run_slots = np.flatnonzero(status_run)
    run_slots = run_slots[np.argsort(job[run_slots], kind="stable")]
    cells = []
    for i, c in enumerate(cap):
        row: list[int] = []
        for s in run_slots:
            if not guest[s]:
                row += [int(job[s])] * int(place[s, i])
        cells.append(tuple(row + [FREE] * (int(c) - len(row))))
    running = tuple(
        RunningJob(job=int(job[s]), gpus=int(view.allocated[env, s]), gpu_type=types[int(view.gpu_type[env, s])],
                   nodes=tuple(int(n) for n in np.flatnonzero(place[s])), attained=float(view.attained[env, s]),
                   remaining=None if remaining is None else float(remaining[s]), restarting=bool(restarting[s]),
                   host=int(job[partner[s]]) if guest[s] and partner[s] >= 0 else None)
        for s in run_slots
    )
    listed = [int(s) for s in (order if order is not None else ()) if waiting[s]]
    rest = np.flatnonzero(waiting)
    rest = [int(s) for s in rest[np.argsort(job[rest], kind="stable")] if int(s) not in set(listed)]
    waited = np.asarray(view.waited[env])
    queue = tuple(
        QueuedJob(job=int(job[s]), gpus=int(view.gpus[env, s]), waited=float(waited[s]),
                  repick=bool(repick is not None and repick[s]))
        for s in listed + rest
    )
    return ClusterState(float(view.clock[env]), types, node_type, tuple(cells), running, queue, jobs_done, num_jobs)


def _label(job: int) -> str:
    return f"j{job}"


def render_text(state: ClusterState, *, queue_shown: int = QUEUE_SHOWN) -> str:
    """A compact text view: clock, nodes as GPU cells (job ids, ``.`` free), running jobs and
    the first ``queue_shown`` queued jobs with a count of the rest."""
    width = max([len(str(j)) for row in state.cells for j in row if j != FREE], default=1)
    head = f"t={state.clock:,.1f} s  GPUs free {state.free_gpus}/{state.total_gpus}"
    if state.num_jobs is not None:
        head += f"  jobs done {state.jobs_done}/{state.num_jobs}"
    lines = [head, "nodes:"]
    name_w = len(str(len(state.cells) - 1))
    type_w = max(len(t) for t in state.node_type)
    for i, (row, gtype) in enumerate(zip(state.cells, state.node_type, strict=True)):
        cells = " ".join(".".rjust(width) if j == FREE else str(j).rjust(width) for j in row)
        lines.append(f"  n{i:<{name_w}} {gtype:<{type_w}} [{cells}]")
    lines.append(f"running ({len(state.running)}):")
    for r in state.running:
        where = f"shares GPUs of {_label(r.host)}" if r.host is not None else "nodes " + ",".join(map(str, r.nodes))
        text = f"  {_label(r.job):<6} {r.gpus:>3} x {r.gpu_type:<6} {where:<16} attained {r.attained:,.0f} GPU-s"
        if r.remaining is not None:
            text += f"  remaining {r.remaining:,.0f} ref-s"
        if r.restarting:
            text += "  (restarting)"
        lines.append(text)
    lines.append(f"queue ({len(state.queue)} waiting):")
    for q in state.queue[:queue_shown]:
        lines.append(f"  {_label(q.job):<6} {q.gpus:>3} GPUs  waited {q.waited:,.0f} s" + ("  (re-pick)" if q.repick else ""))
    if len(state.queue) > queue_shown:
        lines.append(f"  ... and {len(state.queue) - queue_shown} more")
    return "\n".join(lines)


#: ``tab20`` without its two greys (free GPUs are grey)
_PALETTE = tuple(i for i in range(20) if i not in (14, 15))


def job_color(job: int) -> tuple[float, float, float]:
    """A job's colour (matplotlib's ``tab20`` less its greys, cycling), the same in every picture."""
    from matplotlib import colormaps

    r, g, b, _ = colormaps["tab20"](_PALETTE[job % len(_PALETTE)])
    return (r, g, b)


FREE_COLOR = (0.92, 0.92, 0.92)


def render_rgb(state: ClusterState, *, queue_shown: int = QUEUE_SHOWN, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image (``size`` = (W, H) pixels): node occupancy as a grid of
    GPU cells coloured by job (free cells grey), and the first ``queue_shown`` queued jobs as
    bars of their requested GPUs. Drawn with matplotlib's Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    grid, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    n_nodes = len(state.cells)
    n_cols = max(len(c) for c in state.cells)
    for i, row in enumerate(state.cells):
        for k, j in enumerate(row):
            color = FREE_COLOR if j == FREE else job_color(j)
            grid.add_patch(Rectangle((k, n_nodes - 1 - i), 0.92, 0.88, facecolor=color, edgecolor="none"))
            if j != FREE and n_cols * n_nodes <= 128:
                grid.text(k + 0.46, n_nodes - 1 - i + 0.44, str(j), ha="center", va="center", fontsize=7)
    grid.set_xlim(-0.1, n_cols)
    grid.set_ylim(-0.1, n_nodes)
    step = max(1, n_nodes // 16)
    grid.set_yticks([n_nodes - 1 - i + 0.44 for i in range(0, n_nodes, step)],
                    [f"n{i} {state.node_type[i]}" for i in range(0, n_nodes, step)], fontsize=7)
    grid.set_xticks([])
    grid.set_xlabel("GPU", fontsize=8)
    grid.set_title(f"nodes: {state.free_gpus}/{state.total_gpus} GPUs free", fontsize=9)
    for side in ("top", "right", "bottom", "left"):
        grid.spines[side].set_visible(False)

    shown = state.queue[:queue_shown]
    ys = np.arange(len(shown))[::-1]
    bars.barh(ys, [q.gpus for q in shown], color=[job_color(q.job) for q in shown], height=0.7)
    bars.set_yticks(ys, [_label(q.job) for q in shown], fontsize=7)
    bars.set_ylim(-0.6, max(queue_shown, 1) - 0.4)
    bars.set_xlim(0, max([q.gpus for q in shown] + [1]) * 1.1)
    bars.tick_params(axis="x", labelsize=7)
    bars.xaxis.set_major_locator(MaxNLocator(integer=True))
    bars.set_xlabel("GPUs requested", fontsize=8)
    more = len(state.queue) - len(shown)
    bars.set_title(f"queue: {len(state.queue)} waiting" + (f" ({more} not shown)" if more > 0 else ""), fontsize=9)
    done = f"   jobs done {state.jobs_done}/{state.num_jobs}" if state.num_jobs is not None else ""
    fig.suptitle(f"t = {state.clock:,.1f} s   running {len(state.running)}{done}", fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
