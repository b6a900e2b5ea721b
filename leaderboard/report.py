"""Outputs of a run: the Markdown table, the CSV of every cell, per-job results, plots.

Everything but ``timing.csv`` is a pure function of the cells' results, written in the suite's
cell order with fixed float formats (CSV: 10 significant digits; table: fixed decimals), no
timestamps, gzip without a modification time and PNGs without a software stamp: the same suite,
seeds and package version give byte-identical files.

Statistics: for each load and policy, the mean over the runs (windows x seeds) and the half-width
of its 95% confidence interval, Student t with n - 1 degrees of freedom (``t * sd / sqrt(n)``,
none for a single run). "Normalised to FIFO" is the per-run ratio policy / FIFO on the same
window, load and seed, then the same mean and interval over runs; it is undefined ("n/a") when
FIFO's value is 0 in some run (FIFO never preempts, so preemptions never have a ratio).
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from envs.metrics import RESULT_COLUMNS
from leaderboard.suite import (
    Cell,
    PolicySpec,
    Suite,
    code_digest,
    describe_cluster,
    package_version,
)

#: (metric key, column title, kind): the table's metrics, in order.
TABLE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("avg_jct", "avg JCT (s)", "seconds"),
    ("p99_jct", "p99 JCT (s)", "seconds"),
    ("makespan", "makespan (s)", "seconds"),
    ("utilization", "utilisation", "fraction"),
    ("max_rho", "max rho", "rho"),
    ("unfair_fraction", "unfair fraction", "fraction"),
    ("preemptions", "preemptions", "count"),
)
#: every metric of :func:`envs.metrics.summarize`, in the CSV's order
METRICS = ("jobs", "unfinished", "avg_jct", "median_jct", "p95_jct", "p99_jct", "makespan",
           "avg_queueing_delay", "avg_slowdown", "utilization", "avg_rho", "max_rho", "unfair_fraction",
           "preemptions", "preemptions_per_job", "restarts_per_job")
LABELS = ("suite", "cluster", "window", "load", "seed", "policy", "oracle", "key")
FLOAT_FORMAT = "%.10g"


# ------------------------------------------------------------------------------------ frames
def cells_frame(suite: Suite, results) -> pd.DataFrame:
    """One row per finished cell (suite order): labels, every metric, and ``<metric>_vs_fifo``."""
    cluster = suite.cluster.name
    rows = []
    for r in results:
        c = r.cell
        row = {"suite": suite.name, "cluster": cluster, "window": c.window, "load": c.load_label,
               "seed": c.seed, "policy": c.policy, "oracle": c.oracle, "key": c.key}
        row.update({m: float(r.metrics.get(m, np.nan)) for m in METRICS})
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*LABELS, *METRICS])
    ref = df[df["policy"] == "fifo"].set_index(["window", "load", "seed"])
    idx = pd.MultiIndex.from_frame(df[["window", "load", "seed"]])
    for m, _, _ in TABLE_METRICS:
        base = ref[m].reindex(idx).to_numpy(np.float64)
        val = df[m].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(base > 0, val / np.where(base > 0, base, 1.0), np.nan)
        df[f"{m}_vs_fifo"] = ratio
    return df


def ci95(values: np.ndarray) -> tuple[float, float, int]:
    """``(mean, half-width of the 95% Student-t interval, n)``; half-width NaN for n < 2 and
    NaN mean if any value is NaN (an undefined ratio in some run)."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0 or np.isnan(v).any():
        return math.nan, math.nan, n
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, n
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return mean, half, n


def aggregate(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean, CI half-width and n per (load, policy) of every table metric and its FIFO ratio."""
    rows = []
    loads = list(dict.fromkeys(df["load"]))
    for load in loads:
        for p in order:
            sub = df[(df["load"] == load) & (df["policy"] == p)]
            if len(sub) == 0:
                continue
            row = {"load": load, "policy": p, "oracle": bool(sub["oracle"].iloc[0])}
            for m, _, _ in TABLE_METRICS:
                for col in (m, f"{m}_vs_fifo"):
                    mean, half, n = ci95(sub[col].to_numpy())
                    row[col], row[f"{col}_ci"], row["n"] = mean, half, n
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ formatting
def _decimals(kind: str, mean: float) -> int:
    if kind == "fraction" or kind == "ratio":
        return 3
    a = abs(mean)
    if kind == "rho":
        return 0 if a >= 100 else (1 if a >= 10 else 2)
    return 0 if a >= 100 else 1  # seconds, counts


def fmt(mean: float, half: float, kind: str) -> str:
    """``mean ± half`` with decimals fixed by the metric kind and magnitude; "n/a" if undefined."""
    if not math.isfinite(mean):
        return "n/a"
    d = _decimals(kind, mean)
    s = f"{mean + 0.0:,.{d}f}"
    if math.isfinite(half):
        s += f" ± {half + 0.0:,.{d}f}"
    return s


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def ranked(agg: pd.DataFrame, load: str) -> pd.DataFrame:
    """The policies at ``load``, best normalised average JCT first (ties by name)."""
    sub = agg[agg["load"] == load].copy()
    sub["_rank"] = sub["avg_jct_vs_fifo"].fillna(np.inf)
    return sub.sort_values(["_rank", "policy"], kind="mergesort")


def markdown(suite: Suite, specs: list[PolicySpec], cells: list[Cell], df: pd.DataFrame, agg: pd.DataFrame,
             failed: list[tuple[Cell, str]]) -> str:
    spec = suite.cluster
    windows = list(dict.fromkeys(c.window for c in cells))
    loads = list(dict.fromkeys(c.load_label for c in cells))
    sim = suite.sim
    lines = [f"# Leaderboard: {suite.name}", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += [
        f"- cluster: {describe_cluster(spec)}",
        f"- trace: {suite.trace['kind']}" + (f" ({suite.trace['path']})" if "path" in suite.trace else "")
        + f"; windows: {', '.join(windows)}; jobs per window: {_jobs_label(cells)}",
        f"- loads: {', '.join(loads)}; seeds: {', '.join(map(str, suite.seeds))}; "
        f"policies: {', '.join(s.name for s in specs)}",
        f"- simulator: restart overhead {sim['restart_overhead']:g} s, round length "
        f"{'policy default' if sim['round_length'] is None else format(sim['round_length'], 'g') + ' s'}, "
        f"elastic fraction {sim['elastic_fraction']:g}, placer {sim['placer']}{_models_label(sim)}; "
        f"clustergym {package_version()} "
        f"(source {code_digest()[:12]})",
        f"- knobs: {_knobs_label(suite)}",
        f"- cells: {len(cells)} ({len(specs)} policies x {len(windows)} windows x {len(loads)} loads x "
        f"{len(suite.seeds)} seeds)" + (f", {len(failed)} failed" if failed else ""),
        "",
        "Each figure is the mean ± the half-width of its 95% confidence interval (Student t) over the "
        "runs (windows x seeds); n is the number of runs. \"vs FIFO\" is the per-run ratio to FIFO on the "
        "same window, load and seed (n/a where FIFO's value is 0, e.g. preemptions). Oracle policies are "
        "told every job's duration (known_durations=True); the others are not. Ranked by average JCT vs FIFO.",
        "",
    ]
    for load in loads:
        sub = ranked(agg, load)
        title = "native load (the trace's own arrival times)" if load == "native" else f"offered load {load}"
        lines += [f"## {title}", ""]
        header = ["policy", "oracle", "n"] + [t for _, t, _ in TABLE_METRICS]
        rows = []
        for _, r in sub.iterrows():
            rows.append([r["policy"], "oracle" if r["oracle"] else "", str(int(r["n"]))]
                        + [fmt(r[m], r[f"{m}_ci"], k) for m, _, k in TABLE_METRICS])
        lines += [*_md_table(header, rows, ["l", "l", "r"] + ["r"] * len(TABLE_METRICS)), ""]
        lines += ["Normalised to FIFO (ratio per run; lower is better except utilisation):", ""]
        header = ["policy", "oracle"] + [t.replace(" (s)", "") for _, t, _ in TABLE_METRICS]
        rows = []
        for _, r in sub.iterrows():
            rows.append([r["policy"], "oracle" if r["oracle"] else ""]
                        + [fmt(r[f"{m}_vs_fifo"], r[f"{m}_vs_fifo_ci"], "ratio") for m, _, _ in TABLE_METRICS])
        lines += [*_md_table(header, rows, ["l", "l"] + ["r"] * len(TABLE_METRICS)), ""]
    if failed:
        lines += ["## Failed cells", "", "Not cached; a rerun retries them.", ""]
        for c, err in failed:
            lab = c.labels()
            lines.append(f"- {lab['policy']} on {lab['window']}, load {lab['load']}, seed {lab['seed']}: "
                         + err.replace("\n", " "))
        lines.append("")
    lines += ["Files: `cells.csv` (every cell, every metric), `jobs.csv.gz` (every job of every cell), "
              "`jct_cdf_*.png` and `avg_jct_vs_fifo.png` (each also as `.svg` and `.pdf`); `timing.csv` holds wall "
              "times (not reproducible).", ""]
    return "\n".join(lines)


def _jobs_label(cells: list[Cell]) -> str:
    counts = sorted({c.definition["trace"].get("num_jobs") or 0 for c in cells})
    return ", ".join("all" if n == 0 else str(n) for n in counts)


def _models_label(sim: dict) -> str:
    """The optional simulator models a suite turns on, as ", a, b" (empty when none)."""
    on = []
    if sim.get("resources"):
        on.append("CPU/memory model")
    if sim.get("network"):
        on.append("network contention model")
    if sim.get("dynamic_fraction"):
        on.append(f"dynamic-adaptation fraction {sim['dynamic_fraction']:g}")
    if sim.get("application_restart") == "sia":
        on.append("Sia's restart delay per application")
    return "".join(f", {x}" for x in on)


def _knobs_label(suite: Suite) -> str:
    variants = getattr(suite, "variants", {})
    if not suite.knobs and not variants:
        return "each policy's defaults"
    parts = [f"{p}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(kn.items())) + ")"
             for p, kn in sorted(suite.knobs.items())]
    parts += [f"{label} = {v['policy']}(" + ", ".join(f"{k}={x!r}" for k, x in sorted(v.items()) if k != "policy") + ")"
              for label, v in sorted(variants.items())]
    return "; ".join(parts) + "; other policies their defaults"


# ------------------------------------------------------------------------------------ files
def _write_bytes(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=FLOAT_FORMAT, lineterminator="\n", na_rep="")
    return buf.getvalue().encode()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as f:
        f.write(data)
    return buf.getvalue()


def jobs_frame(suite: Suite, results) -> pd.DataFrame:
    parts = []
    for r in results:
        c = r.cell
        j = r.jobs[list(RESULT_COLUMNS)].copy()
        j.insert(0, "policy", c.policy)
        j.insert(0, "seed", c.seed)
        j.insert(0, "load", c.load_label)
        j.insert(0, "window", c.window)
        parts.append(j)
    if not parts:
        return pd.DataFrame(columns=["window", "load", "seed", "policy", *RESULT_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: matplotlib settings of every plot: fonts readable at one column width (3.5 in) of a paper,
#: and SVG/PDF files without dates or random ids (byte-identical reruns)
STYLE = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "axes.linewidth": 0.6, "grid.linewidth": 0.5, "svg.hashsalt": "clustergym",
         "svg.fonttype": "none", "pdf.fonttype": 42}
#: one figure column of a two-column paper, in inches
COLUMN_WIDTH = 3.5
#: the formats every plot is written in, beside each other (same stem)
PLOT_FORMATS = ("png", "svg", "pdf")
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
             "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}
#: highlight colours (Okabe-Ito, distinguishable with colour-blindness); the rest are grey
ROLE_COLORS = {"reference": "#000000", "best non-oracle": "#0072B2", "best oracle": "#D55E00",
               "agent": "#009E73"}
AGENT_COLORS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9")
OTHER_COLOR = "#B0B0B0"


def _save(fig, path: Path) -> list[Path]:
    """``path`` (PNG) and its SVG and PDF twins, without timestamps."""
    out = []
    for ext in PLOT_FORMATS:
        target = path.with_suffix(f".{ext}")
        fig.savefig(target, format=ext, metadata=_METADATA[ext], dpi=200 if ext == "png" else None)
        out.append(target)
    return out


def highlights(agg: pd.DataFrame, load: str, order: list[str], agents: list[str] = ()) -> dict[str, tuple[str, str]]:
    """The policies a plot highlights at ``load``, ``{policy: (role, colour)}``: FIFO (the
    reference), the best non-oracle and the best oracle baseline by mean average JCT vs FIFO,
    and every agent; the others are drawn grey."""
    out: dict[str, tuple[str, str]] = {}
    if "fifo" in order:
        out["fifo"] = ("reference", ROLE_COLORS["reference"])
    sub = ranked(agg, load) if len(agg) else agg
    baselines_only = sub[~sub["policy"].isin(list(agents)) & (sub["policy"] != "fifo")] if len(sub) else sub
    for role, oracle in (("best non-oracle", False), ("best oracle", True)):
        cand = baselines_only[baselines_only["oracle"] == oracle] if len(baselines_only) else baselines_only
        cand = cand[np.isfinite(cand["avg_jct_vs_fifo"].to_numpy(np.float64))] if len(cand) else cand
        if len(cand):
            out[str(cand["policy"].iloc[0])] = (role, ROLE_COLORS[role])
    for i, a in enumerate(x for x in order if x in agents):
        out[a] = ("agent", AGENT_COLORS[i % len(AGENT_COLORS)])
    return out


def _colors(order: list[str], highlight: dict[str, tuple[str, str]]) -> dict[str, str]:
    """A colour per policy: the highlighted ones' own, grey for the rest."""
    return {p: highlight[p][1] if p in highlight else OTHER_COLOR for p in order}


def cdf_figure(jobs: pd.DataFrame, load: str, order: list[str], title: str,
               highlight: dict[str, tuple[str, str]] | None = None):
    """The figure of :func:`plot_cdf` (call inside ``plt.rc_context(STYLE)``); returns it open."""
    plt = _plt()
    highlight = highlight if highlight is not None else {p: ("", c) for p, c in zip(order, AGENT_COLORS, strict=False)}
    colors = _colors(order, highlight)
    sub = jobs[jobs["load"] == load]
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.6))
    grey_drawn = False
    for p in sorted(order, key=lambda p: p in highlight):  # grey first, highlights on top
        jct = np.sort(sub.loc[sub["policy"] == p, "jct"].dropna().to_numpy(np.float64))
        if len(jct) == 0:
            continue
        y = np.arange(1, len(jct) + 1) / len(jct)
        if p in highlight:
            role = highlight[p][0]
            ax.step(np.maximum(jct, 1e-3), y, where="post", color=colors[p], linewidth=1.3, zorder=3,
                    label=f"{p} ({role})" if role else p)
        else:
            ax.step(np.maximum(jct, 1e-3), y, where="post", color=colors[p], linewidth=0.6, alpha=0.8, zorder=2,
                    label=None if grey_drawn else "other policies")
            grey_drawn = True
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (s, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    rank = {p: i for i, p in enumerate(order)}
    pairs = sorted(zip(handles, labels, strict=True),
                   key=lambda hl: (hl[1] == "other policies", rank.get(hl[1].split(" (")[0], 0)))
    if pairs:  # lower right: a CDF of JCTs is high there, so that corner holds no data
        ax.legend([h for h, _ in pairs], [lab for _, lab in pairs], loc="lower right", frameon=True,
                  framealpha=0.9, edgecolor="none", handlelength=1.5, borderaxespad=0.3)
    fig.tight_layout(pad=0.3)
    return fig


def plot_cdf(jobs: pd.DataFrame, load: str, order: list[str], path: Path, title: str,
             highlight: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    """JCT CDF per policy at one load, pooling every job of every run; the ``highlight``
    policies in colour (legend: name and role), every other policy as a thin grey line. Written
    as PNG, SVG and PDF, one column wide."""
    plt = _plt()
    with plt.rc_context(STYLE):
        fig = cdf_figure(jobs, load, order, title, highlight)
        files = _save(fig, path)
        plt.close(fig)
    return files


def bars_figure(agg: pd.DataFrame, order: list[str], title: str,
                highlight: dict[str, tuple[str, str]] | None = None):
    """The figure of :func:`plot_bars` (call inside ``plt.rc_context(STYLE)``); returns it open."""
    plt = _plt()
    highlight = highlight or {}
    loads = list(dict.fromkeys(agg["load"]))
    first = ranked(agg, loads[0]) if loads else agg
    names = [p for p in first["policy"] if p in order] + [p for p in order if p not in set(first["policy"])]
    oracle = dict(zip(agg["policy"], agg["oracle"], strict=False))
    markers = ("o", "s", "^", "D", "v", "P")
    load_colors = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
    n = len(names)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, min(9.0, 1.1 + 0.17 * max(n, 3))), layout="constrained")
    y = np.arange(n)
    offsets = (np.arange(len(loads)) - (len(loads) - 1) / 2) * min(0.25, 0.6 / max(1, len(loads)))
    for i, load in enumerate(loads):
        sub = agg[agg["load"] == load].set_index("policy").reindex(names)
        mean = sub["avg_jct_vs_fifo"].to_numpy(np.float64)
        half = np.nan_to_num(sub["avg_jct_vs_fifo_ci"].to_numpy(np.float64), nan=0.0)
        label = "native load" if load == "native" else f"load {load}"
        ax.errorbar(mean, y + offsets[i], xerr=half, fmt=markers[i % len(markers)], markersize=3.5,
                    color=load_colors[i % len(load_colors)], ecolor=load_colors[i % len(load_colors)],
                    elinewidth=0.8, capsize=1.5, label=label, zorder=3)
    ax.axvline(1.0, color="black", linewidth=0.7, linestyle="--", zorder=1)
    ax.set_yticks(y)
    ax.set_yticklabels([p + ("*" if oracle.get(p) else "") for p in names])
    for tick, p in zip(ax.get_yticklabels(), names, strict=True):
        if p in highlight:
            tick.set_color(highlight[p][1])
            tick.set_fontweight("bold")
    ax.set_ylim(n - 0.5, -0.5)
    has_oracle = any(oracle.get(p) for p in names)
    ax.set_xlabel("average JCT / FIFO's (lower is better)" + ("\n* oracle: told job durations" if has_oracle else ""))
    finite = agg["avg_jct_vs_fifo"].to_numpy(np.float64)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if len(finite) and finite.max() / finite.min() > 20:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)  # a ratio is positive: a wide interval is cut at 0
    ax.grid(True, axis="x", which="major", alpha=0.3)
    if len(loads) == 1:
        title += ", native load" if loads[0] == "native" else f", load {loads[0]}"
    fig.suptitle(title, fontsize=STYLE["axes.titlesize"])
    if len(loads) > 1:  # under the axis label: never on the data
        fig.legend(loc="outside lower center", ncol=min(len(loads), 4), frameon=False, handletextpad=0.3,
                   columnspacing=1.2)
    return fig


def plot_bars(agg: pd.DataFrame, order: list[str], path: Path, title: str,
              highlight: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    """Mean average JCT normalised to FIFO per policy with its 95% CI, one marker per load
    (a dot plot: one line per policy, best first), oracle policies starred and the
    ``highlight`` policies' names in their colour. Written as PNG, SVG and PDF, one column wide."""
    plt = _plt()
    with plt.rc_context(STYLE):
        fig = bars_figure(agg, order, title, highlight)
        files = _save(fig, path)
        plt.close(fig)
    return files


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in s)


def write_all(suite: Suite, specs: list[PolicySpec], cells: list[Cell], results, failed, out: Path) -> list[Path]:
    """Write every output of a run into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    order = [s.name for s in specs]
    df = cells_frame(suite, results)
    agg = aggregate(df, order)
    files = [
        _write_bytes(out / "leaderboard.md", markdown(suite, specs, cells, df, agg, failed).encode()),
        _write_bytes(out / "cells.csv", _csv(df)),
    ]
    jobs = jobs_frame(suite, results)
    files.append(_write_bytes(out / "jobs.csv.gz", _gzip(_csv(jobs))))
    timing = pd.DataFrame([{"key": r.cell.key, **r.cell.labels(), "events": r.events, "wall_s": r.wall_time}
                           for r in results])
    files.append(_write_bytes(out / "timing.csv", _csv(timing)))
    if len(df):
        agents = [s.name for s in specs if s.agent is not None]
        for load in dict.fromkeys(df["load"]):
            name = "native" if load == "native" else f"load-{_slug(load)}"
            title = f"{suite.name}: JCT CDF, {'native load' if load == 'native' else 'load ' + load}"
            files += plot_cdf(jobs, load, order, out / f"jct_cdf_{name}.png", title,
                              highlights(agg, load, order, agents))
        first = next(iter(dict.fromkeys(df["load"])))
        files += plot_bars(agg, order, out / "avg_jct_vs_fifo.png", f"{suite.name}: avg JCT vs FIFO (mean, 95% CI)",
                           highlights(agg, first, order, agents))
    return files
