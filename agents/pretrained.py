"""Pretrained agents shipped with the package, loadable by name.

Each is a folder under ``agents/pretrained/``: the agent (``agent.json``, ``model.zip``, as
:func:`agents.save_agent` writes them) and ``training.json``, which records the ``train.py``
command, the seed, the trace and what the run measured on its held-out windows, so that anyone
can retrain it (``python train.py --preset NAME``, see :data:`PRESETS`) and compare.

>>> from agents import AgentPolicy, load_agent
>>> load_agent("philly-clairvoyant")                # doctest: +SKIP
>>> envs.simulate(trace, cluster, AgentPolicy("philly-clairvoyant"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

__all__ = ["PRETRAINED_DIR", "export_agent", "pretrained_names", "resolve_agent", "training_record"]

#: where the shipped agents live (package data)
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def pretrained_names() -> list[str]:
    """Names of the shipped agents (folders holding an ``agent.json``)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "agent.json").is_file())


def resolve_agent(path_or_name: str | Path) -> Path:
    """The folder of an agent: ``path_or_name`` itself when it is a folder, else the shipped
    agent of that name. A clear error names both possibilities when it is neither."""
    path = Path(path_or_name)
    if path.is_dir():
        return path
    name = str(path_or_name)
    if name in pretrained_names():
        return PRETRAINED_DIR / name
    raise FileNotFoundError(
        f"{path_or_name}: neither an agent folder (agent.json and model.zip) nor a shipped agent "
        f"(known: {', '.join(pretrained_names()) or 'none'})")


def training_record(name: str) -> dict:
    """``training.json`` of a shipped agent: its training command, seed and measured results."""
    folder = resolve_agent(name)
    record = folder / "training.json"
    if not record.is_file():
        raise FileNotFoundError(f"{folder}: no training.json")
    return json.loads(record.read_text())


def export_agent(run: str | Path, dest: str | Path, *, command: str) -> Path:
    """Copy the agent of the finished ``train.py`` run in ``run`` to ``dest`` (e.g.
    ``PRETRAINED_DIR / name``) with a ``training.json`` recording ``command``, the run's
    arguments (seed included), the step kept and what the final table measured for the agent
    on the held-out windows (its mean avg JCT, ratios to the best non-oracle and oracle
    baselines with their CIs, and those baselines' names)."""
    run, dest = Path(run), Path(dest)
    agent, results = run / "agent", run / "results.csv"
    for need in (agent / "agent.json", agent / "model.zip", agent / "selection.json", results, run / "args.json"):
        if not need.is_file():
            raise FileNotFoundError(f"{run}: not a finished train.py run (missing {need.relative_to(run)})")
    table = pd.read_csv(results).set_index("policy")
    row = table.loc["agent"]
    track = row["track"]
    baselines = table.drop(index="agent")
    best = {t: (baselines[baselines["oracle"] == o]["avg_jct"].idxmin() if (baselines["oracle"] == o).any() else None)
            for t, o in (("non-oracle", False), ("oracle", True))}
    measured = {"track": track, "agent_avg_jct": float(row["avg_jct"]), "agent_p99_jct": float(row["p99_jct"])}
    for t, col in (("non-oracle", "vs_best_nonoracle"), ("oracle", "vs_best_oracle")):
        if best[t] is not None:
            measured[f"best_{t}"] = best[t]
            measured[f"best_{t}_avg_jct"] = float(baselines.loc[best[t], "avg_jct"])
            measured[f"ratio_to_best_{t}"] = [float(row[col]), float(row[f"{col}_low"]), float(row[f"{col}_high"])]
            measured[f"wins_ties_losses_vs_best_{t}"] = str(baselines.loc[best[t], "agent_w/t/l"])
    args = json.loads((run / "args.json").read_text())
    if args.get("trace"):
        args["trace"] = Path(args["trace"]).name  # where the file lay on the training machine is no one's business
    record = {"command": command, "seed": args.get("seed"), "args": args,
              "selection": json.loads((agent / "selection.json").read_text()), "test": measured}
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("agent.json", "model.zip"):
        shutil.copyfile(agent / name, dest / name)
    (dest / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return dest
