"""Sweep train.py over seeds and hyper-parameters with Ray Tune; one CSV table of the results.

Each trial is one ``train.main(argv)`` run in its own folder ``<out>/trials/<trial>/`` (the
train.py arguments of ``--train-args``, the trial's values, ``--output``), run in a child process
so that train.py has a main thread for its signal handlers, with its output in ``train.log``
there. A trial reports the run's evaluation metric: the last validation row of its ``eval.csv``
(the last row if the file has no ``split`` column), column ``--metric``; if that column is absent,
the one column whose name contains it, else NaN with a note naming the columns found. Trials run
on the Ray cluster at ``--address`` (default: a local instance), ``--cpus-per-trial`` CPUs each.

Outputs: ``<out>/results.csv`` (one row per trial: its values, the metric, the metric's column,
step and split, the other columns of that ``eval.csv`` row, wall time and folder) and
``<out>/summary.csv`` (per hyper-parameter setting: the metric's mean and 95% t-interval over the
seeds). A trial whose folder holds a finished run (``results.csv``) is read, not retrained, and
one holding a stopped run resumes (``--resume``): rerunning a killed sweep continues it.

    python benchmarks/sweep_ray.py --seeds 0 1 2 --grid learning_rate=1e-4,3e-4 --out sweeps/lr \\
        --train-args="--total-timesteps 50000 --eval-every 25000"

Every machine of a cluster needs the project installed and ``--out`` on storage they all share
(each trial writes its folder there; the table is written by the driver).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: the metric a trial reports by default: the agent's mean avg JCT on the validation windows
METRIC = "agent_avg_jct"


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["learning_rate=1e-4,3e-4", "hidden=64"]`` -> ``{"learning_rate": [1e-4, 3e-4], ...}``
    (names as train.py's fields, ``-`` or ``_``; values parsed as int, float, or kept as text)."""
    import train

    fields = {f.name for f in train.dataclasses.fields(train.Args)}
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,...")
        if name not in fields:
            raise ValueError(f"--grid {item!r}: train.py has no argument --{name.replace('_', '-')}")
        if name in ("seed", "output", "resume"):
            raise ValueError(f"--grid {item!r}: --{name} is set by the sweep (seeds: --seeds)")
        grid[name] = [_value(v.strip()) for v in values.split(",")]
    return grid


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def trial_name(config: dict[str, Any]) -> str:
    """A folder name for a trial: its values in a fixed order, e.g. ``learning_rate=0.0003,seed=0``."""
    return ",".join(f"{k}={config[k]}" for k in sorted(config))


def train_argv(config: dict[str, Any], base: list[str], output: Path) -> list[str]:
    """train.py's arguments for the trial ``config`` (a bool value becomes --x / --no-x)."""
    argv = list(base)
    for name, value in sorted(config.items()):
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or value in ("true", "false", "True", "False"):
            on = value if isinstance(value, bool) else value.lower() == "true"
            argv.append(flag if on else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag, str(value)]
    return [*argv, "--output", str(output)]


def read_metric(eval_csv: Path, metric: str = METRIC) -> dict[str, Any]:
    """The trial's metric from ``eval.csv``: its last validation row (the last row when there is
    no ``split`` column). Never raises on a missing file or column: the value is NaN and
    ``note`` says why."""
    out: dict[str, Any] = {metric: math.nan, "metric_column": None, "metric_step": None, "metric_split": None,
                           "note": ""}
    if not eval_csv.is_file() or eval_csv.stat().st_size == 0:
        out["note"] = f"no {eval_csv.name}"
        return out
    rows = pd.read_csv(eval_csv)
    if "split" in rows.columns:
        validation = rows[rows["split"] == "validation"]
        if validation.empty:
            out["note"] = "no validation row; last row of any split"
        else:
            rows = validation
    if rows.empty:
        out["note"] = f"{eval_csv.name} has no rows"
        return out
    last = rows.iloc[-1]
    column = metric if metric in rows.columns else None
    if column is None:
        similar = [c for c in rows.columns if metric in c]
        if len(similar) == 1:
            column = similar[0]
            out["note"] = f"no column {metric}; used {column}"
        else:
            out["note"] = f"no column {metric} in {eval_csv.name} (columns: {', '.join(map(str, rows.columns))})"
    if column is not None:
        out[metric] = float(last[column])
        out["metric_column"] = column
    out["metric_step"] = int(last["step"]) if "step" in rows.columns else None
    out["metric_split"] = str(last["split"]) if "split" in rows.columns else None
    for c in rows.columns:
        if c not in ("step", "split", column) and pd.api.types.is_number(last[c]):
            out[f"eval/{c}"] = float(last[c])
    return out


#: the child process of a trial: train.py's ``main(argv)`` in the main thread of its own interpreter
CHILD = "import sys, train; train.main(sys.argv[1:])"


def run_trial(config: dict[str, Any], base: list[str], out: Path, metric: str = METRIC,
              cwd: str | None = None) -> dict[str, Any]:
    """Train one trial in ``out/trials/<name>`` (or read / resume what is there), in a child
    process started in ``cwd`` (train.py's relative paths are relative to it); its metrics."""
    folder = out / "trials" / trial_name(config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if (folder / "results.csv").is_file():
        status = "cached"
    else:
        if (folder / "args.json").is_file():
            argv = ["--resume", str(folder)]
            status = "resumed"
        else:
            argv = train_argv(config, base, folder)
            status = "trained"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "train.log", "ab") as log:
            code = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=cwd, stdout=log,
                                  stderr=subprocess.STDOUT, check=False).returncode
        if code != 0:
            status = f"failed (exit {code}; see {folder / 'train.log'})"
    return {**read_metric(folder / "eval.csv", metric), "status": status,
            "wall_s": time.perf_counter() - started, "folder": str(folder)}


def configs(seeds: list[int], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, for every seed (seed last)."""
    names = sorted(grid)
    return [{**dict(zip(names, values, strict=True)), "seed": s}
            for values in itertools.product(*(grid[n] for n in names)) for s in seeds]


def summarize(table: pd.DataFrame, grid_names: list[str], metric: str = METRIC) -> pd.DataFrame:
    """Per setting of the grid: trials, the metric's mean over seeds and its 95% t-interval."""
    rows = []
    groups = table.groupby(grid_names, sort=True, dropna=False) if grid_names else [((), table)]
    for key, g in groups:
        values = g[metric].dropna().to_numpy(dtype=float)
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else math.nan
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(grid_names, key, strict=True)), "trials": len(g), "seeds_with_metric": n,
                     f"{metric}_mean": mean, f"{metric}_ci95": half})
    return pd.DataFrame(rows)


def sweep(seeds: list[int], grid: dict[str, list[Any]], base: list[str], out: Path, *, metric: str = METRIC,
          cpus_per_trial: float = 1.0, address: str | None = None) -> pd.DataFrame:
    """Run every trial as a Ray Tune trial; write and return ``<out>/results.csv``."""
    import ray
    from ray import tune

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    trials = configs(seeds, grid)

    cwd = os.getcwd()

    def trainable(config: dict[str, Any]) -> None:
        tune.report(run_trial(trials[config["config_index"]], base, out, metric, cwd))

    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial}),
            param_space={"config_index": tune.grid_search(list(range(len(trials))))},
            run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=0),
        )
        grid_result = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    rows = []
    for result in grid_result:
        index = result.config["config_index"]
        metrics = {k: v for k, v in (result.metrics or {}).items() if k == metric or k.startswith("eval/")
                   or k in ("metric_column", "metric_step", "metric_split", "note", "status", "wall_s", "folder")}
        if result.error is not None:
            metrics = {metric: math.nan, "status": f"error: {type(result.error).__name__}: {result.error}"}
        rows.append({"trial": index, **trials[index], **metrics})
    table = pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)
    table.to_csv(out / "results.csv", index=False)
    summarize(table, sorted(grid), metric).to_csv(out / "summary.csv", index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/sweep_ray.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.py --seed values (default: 0)")
    ap.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2",
                    help="train.py arguments to sweep, every combination (e.g. learning_rate=1e-4,3e-4)")
    ap.add_argument("--out", type=Path, default=Path("sweeps/default"), help="output folder")
    ap.add_argument("--metric", default=METRIC, help=f"eval.csv column reported (default: {METRIC})")
    ap.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray reserves per trial (default: 1)")
    ap.add_argument("--address", help="Ray cluster to join (default: start a local instance)")
    ap.add_argument("--train-args", default="", metavar="ARGS",
                    help='train.py arguments of every trial, one string: --train-args="--total-timesteps 50000"')
    args = ap.parse_args(argv)
    base = shlex.split(args.train_args)
    try:
        grid = parse_grid(args.grid)
    except ValueError as exc:
        ap.error(str(exc))
    if not args.cpus_per_trial > 0:
        ap.error(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial:g}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    table = sweep(args.seeds, grid, base, args.out, metric=args.metric, cpus_per_trial=args.cpus_per_trial,
                  address=args.address)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[[c for c in table.columns if not c.startswith("eval/") and c != "folder"]].to_string(index=False))
    print(f"table: {args.out / 'results.csv'}; per setting over seeds: {args.out / 'summary.csv'}")
    return 0 if table["status"].isin(["trained", "resumed", "cached"]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
