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
              "`jct_cdf_*.png`, `avg_jct_vs_fifo.png`; `timing.csv` holds wall times (not reproducible).", ""]
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


def _colors(order: list[str]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    return {p: cmap(i % cmap.N) for i, p in enumerate(order)}


def plot_cdf(jobs: pd.DataFrame, load: str, order: list[str], path: Path, title: str) -> Path:
    """JCT CDF per policy at one load, pooling every job of every run."""
    plt = _plt()
    colors = _colors(order)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    sub = jobs[jobs["load"] == load]
    for p in order:
        jct = np.sort(sub.loc[sub["policy"] == p, "jct"].dropna().to_numpy(np.float64))
        if len(jct) == 0:
            continue
        y = np.arange(1, len(jct) + 1) / len(jct)
        ax.step(np.maximum(jct, 1e-3), y, where="post", label=p, color=colors[p], linewidth=1.4)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (s, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_ylim(0, 1.005)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def plot_bars(agg: pd.DataFrame, order: list[str], path: Path, title: str) -> Path:
    """Mean normalised average JCT (vs FIFO) per policy, one bar per load, 95% CI whiskers."""
    plt = _plt()
    loads = list(dict.fromkeys(agg["load"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(order) * max(1, len(loads)) ** 0.5 + 2), 4.5), dpi=100)
    width = 0.8 / max(1, len(loads))
    cmap = plt.get_cmap("viridis")
    x = np.arange(len(order))
    for i, load in enumerate(loads):
        sub = agg[agg["load"] == load].set_index("policy").reindex(order)
        mean = sub["avg_jct_vs_fifo"].to_numpy(np.float64)
        half = np.nan_to_num(sub["avg_jct_vs_fifo_ci"].to_numpy(np.float64), nan=0.0)
        label = "native load" if load == "native" else f"load {load}"
        color = cmap(0.15 + 0.7 * i / max(1, len(loads) - 1)) if len(loads) > 1 else cmap(0.35)
        ax.bar(x + (i - (len(loads) - 1) / 2) * width, mean, width, yerr=half, capsize=3, label=label,
               color=color, edgecolor="black", linewidth=0.5)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(x)
    ax.set_xticklabels(order, rotation=30, ha="right", fontsize=9)
    ax.set_ylabel("average JCT / FIFO's (lower is better)")
    finite = agg["avg_jct_vs_fifo"].to_numpy(np.float64)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if len(finite) and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


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
        for load in dict.fromkeys(df["load"]):
            name = "native" if load == "native" else f"load-{_slug(load)}"
            title = f"{suite.name}: JCT CDF, {'native load' if load == 'native' else 'load ' + load} " \
                    f"(all jobs of all runs)"
            files.append(plot_cdf(jobs, load, order, out / f"jct_cdf_{name}.png", title))
        files.append(plot_bars(agg, order, out / "avg_jct_vs_fifo.png",
                               f"{suite.name}: average JCT normalised to FIFO (mean, 95% CI)"))
    return files
