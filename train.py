r"""Train a learned scheduler on GpuCluster-v0 and judge it against the classic baselines.

Read top to bottom: arguments, traces (train / validation / test split by time, evaluation
windows), envs, model (or resume), callbacks (episode metrics, checkpoints, periodic validation
evaluation, clean interruption), learning, and the final table of the agent against every
baseline on the test windows.

Protocol (``agents.evaluation``): the trace is cut in submit order into a training part (the
first ``--train-fraction - --validation-fraction``: 60%), a validation part (the end of the
training period: 10%) and a test part (the remaining 30%, held out). From each of validation
and test, ``--eval-windows`` windows of ``--num-jobs`` jobs are chosen: twice as many evenly
spaced candidates are replayed under FIFO, those where at least ``--eval-min-waiting`` of the
jobs wait more than 1 s are contended, and evenly spaced contended ones are kept (windows may
overlap in a short part); the uncontended candidates are counted, not ranked. The agent is
evaluated on the validation windows every ``--eval-every`` steps and at the end; the model with
the lowest validation mean avg JCT is the run's agent. Only that agent meets the test windows,
once, in the final table: per policy its track (clairvoyant: sees true durations), mean avg
JCT, p99 JCT (over all jobs of all episodes), the ratio of its mean avg JCT to the best
non-oracle and to the best oracle baseline with paired 95% bootstrap CIs over windows, and the
agent's wins / ties (within 0.5%) / losses per window against it. The agent is ranked in its
track: with ``--known-durations`` against the oracle baselines (SRTF, SJF, Themis, Heet...),
without against the others. Baseline episodes run in ``--eval-workers`` background processes
during training and are cached (``--baseline-cache``), so a second run only simulates the agent.

    python train.py                                   # synthetic default: about 5 min on 2 CPUs
    python train.py --preset philly-clairvoyant       # the real Philly trace (the shipped agent's run)
    python train.py --resume runs/default             # continue a killed or finished run

PPO trains in whole rollouts of ``--n-steps`` x ``--num-envs`` steps (4,096 by default), so
``--total-timesteps`` is rounded up to a whole number of rollouts (150,000 -> 151,552).

Resuming: ``--resume DIR`` continues the run with the arguments saved in ``DIR/args.json``
(``--total-timesteps``, ``--eval-every``, ``--checkpoint-every``, ``--torch-threads`` and
``--device`` may be given to change them, and are saved; any other flag must repeat the saved value). Checkpoints are
taken at rollout boundaries (the first one at step 0, then every ``--checkpoint-every`` steps,
at the end, and on Ctrl-C or SIGTERM, which finish the rollout under way first) and hold the
model with its optimiser, the state of every env (episodes in progress included), the
VecNormalize statistics and running returns, the python, NumPy and torch RNGs, the step
counters and the logger's values not yet written. A checkpoint is written to
``checkpoints/tmp`` and swapped in by renames that always leave one whole checkpoint,
``checkpoints/last`` or else ``checkpoints/old``; the resume uses that one and drops the log
rows written after it. A run with no checkpoint resumes only when nothing was logged yet (it
starts again at step 0); otherwise it is refused.

So a run stopped or killed at any point (SIGKILL included) and resumed equals the uninterrupted
run with the same seed: the same model parameters, step count, rows of ``progress.csv``,
``episodes.csv`` and ``eval.csv``, and final table. What differs: the wall-clock columns
``time/fps`` and ``time/time_elapsed`` of ``progress.csv``; the order of its columns (SB3 adds
new columns in the order of a Python set, which varies from process to process, interrupted or
not); the TensorBoard files, which hold the steps between the checkpoint and the kill twice. A
run that finished and is resumed with a larger ``--total-timesteps`` keeps the ``eval.csv`` row
of its first end, and changing ``--eval-every`` or ``--torch-threads`` on resume changes the run
from then on.

Outputs in ``--output``: ``args.json``, ``progress.csv`` and TensorBoard files (SB3 logger),
``episodes.csv`` (training episode metrics), ``eval.csv`` (validation evaluation of the agent,
FIFO and Tiresias every ``--eval-every`` steps, at the end of a rollout, and of the last model;
``split`` names the part), ``checkpoints/last/`` (see above), ``checkpoints/best/`` (the best
model on validation so far), ``agent/`` (the run's agent, loadable with ``agents.load_agent``:
once the run finishes, the best on validation, whose step ``agent/selection.json`` gives; a
stopped run leaves its model at the stop there), ``agent_last/`` (the last model) and
``results.csv`` (the final table, on the test part).
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import inspect
import json
import os
import pickle
import random
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecNormalize

import baselines
from agents import ALGOS, ENV_KEYS, Agent, AgentPolicy, load_agent, make_model, save_agent
from agents.device import resolve_device
from agents.evaluation import (
    TIE_TOLERANCE,
    BaselineJob,
    EpisodeCache,
    PolicyRuns,
    WindowSet,
    contended_windows,
    final_table,
    run_policy,
    seed_matters,
    split_by_time,
    worker_pool,
)
from agents.imitation import TEACHERS, clone
from agents.threads import set_torch_threads
from envs import EnvConfig
from envs.engine import ACTION_MODES, REWARDS, VISIBLE_ORDERS
from envs.sb3 import GpuClusterVecEnv
from envs.workload import drop_oversize
from traces import clusters, load_trace, synthetic, window
from traces.clusters import ClusterSpec
from traces.paths import PHILLY_POLLUX_CSV, POLLUX_REFERENCE, shared_file


@dataclass
class Args:
    output: str = "runs/default"
    """folder for logs, checkpoints, the agent and the results table"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint, with its saved arguments (only
    --total-timesteps, --eval-every, --checkpoint-every and --torch-threads may change)"""
    seed: int = 0
    """seed of everything: trace, envs, network initialisation, evaluation"""
    trace: str | None = None
    """trace file (any format traces.load_trace reads), or ``pollux-workloads``: the eight Pollux
    workloads one after another as goodput jobs (traces.pollux.load_workloads; use --cluster
    pollux); none: the synthetic generator"""
    trace_jobs: int = 20_000
    """jobs of the synthetic trace (ignored with --trace)"""
    train_fraction: float = 0.7
    """the first fraction of the trace (in submit order) is the training period; the rest is the
    test part, used only by the final table"""
    validation_fraction: float = 0.1
    """the end of the training period (this fraction of the whole trace) is not trained on: it
    validates (periodic evaluations, choice of the checkpoint kept)"""
    cluster: str = "tiny"
    """cluster preset (traces.clusters.PRESETS)"""
    load: float = 1.0
    """offered load of the trace on the cluster (the whole trace is rescaled to it)"""
    num_jobs: int = 64
    """jobs per episode window (training and evaluation)"""
    max_slots: int = 16
    """visible job slots K"""
    action_mode: str = "priority"
    """'priority' (a score per slot; algo ppo), 'pick' (Discrete(K+1), masked; algo maskable_ppo) or
    'allocate' (per slot a priority level, GPU type, GPU count and batch choice, masked; algo
    maskable_ppo with policy mlp, the defaults in this mode)"""
    preemption: bool = True
    """preempt at round boundaries (priority mode: running jobs compete for GPUs every round)"""
    round_length: float = 1800.0
    """seconds between round boundaries (with preemption)"""
    known_durations: bool = True
    """whether the agent sees the remaining work of each job (the baselines SJF/SRTF need it too)"""
    visible_order: str = "auto"
    """which jobs fill the K visible slots and in which order (envs.observation.VISIBLE_ORDERS:
    arrival, attained or remaining); auto: remaining with --known-durations, else attained"""
    serve_hidden: bool = True
    """priority mode: serve the jobs beyond the K visible ones after them, in visible order"""
    preempt_every_event: bool = True
    """priority mode with preemption: running jobs compete for GPUs at every event, not only at
    round boundaries (suits orders that a running job keeps, as by remaining work; an order by
    attained service swaps jobs at every restart: use round boundaries there)"""
    imitate: str = "auto"
    """warm start by behaviour cloning of a heuristic's order (agents.imitation) before PPO: none,
    srtf, las or tiresias; auto: srtf with --known-durations, else las"""
    imitate_steps: int = 8_000
    """environment states gathered for behaviour cloning (over 3 DAgger rounds)"""
    imitate_log_std: float = -3.0
    """log std of the scores after behaviour cloning (low, so PPO's sampling keeps the order)"""
    reward: str = "jct"
    """'jct' (minus jobs in system x time), 'slowdown' or 'utilization'"""
    algo: str = "ppo"
    """'ppo' (stable-baselines3) or 'maskable_ppo' (sb3-contrib, pick mode)"""
    policy: str = "slot"
    """'slot' (permutation-equivariant per-job encoder) or 'mlp' (SB3 MlpPolicy reference)"""
    hidden: int = 64
    """width of the policy network"""
    num_envs: int = 16
    """environments stepped together by the native vector env"""
    total_timesteps: int = 150_000
    """environment steps to train for (across all envs)"""
    n_steps: int = 256
    """steps per env per PPO rollout"""
    batch_size: int = 512
    """PPO minibatch size"""
    n_epochs: int = 4
    """PPO epochs per rollout"""
    learning_rate: float = 1e-4
    """Adam learning rate (small, so PPO refines the imitation warm start rather than undoing it)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    ent_coef: float = 0.0
    """entropy bonus (0: the warm start's low exploration noise is kept, not pushed up)"""
    normalize_reward: bool = True
    """scale rewards by a running estimate of the return's std (SB3 VecNormalize); the heavy-tailed
    time between events makes raw rewards vary over orders of magnitude"""
    log_std_init: float = -1.5
    """initial log std of the Gaussian scores (priority mode; scores live in [-1, 1])"""
    eval_every: int = 50_000
    """evaluate on the validation windows every this many steps (0: only at the end); the
    agent kept is the evaluated checkpoint with the lowest validation mean avg JCT"""
    eval_windows: int = 30
    """contended windows of each of the validation and test parts (evenly spaced among the
    contended ones of twice as many evenly spaced candidates)"""
    eval_seeds: int = 2
    """seeds per window (model draw for jobs without a model; a window whose every job names
    its model replays the same for every seed, and is simulated once)"""
    eval_min_waiting: float = 0.1
    """a candidate window is contended, hence kept, when at least this fraction of its jobs
    wait more than 1 s under FIFO"""
    baselines: str = "all"
    """baselines of the final table: 'all' (every registered one) or a comma-separated list of
    names (fifo and tiresias, the validation references, are always included); a shorter list
    saves judging time on traces where the optimisation baselines are slow"""
    eval_workers: int = 2
    """processes replaying baseline episodes and candidate windows, in the background of the
    training (results do not depend on it; with fewer than 8 --eval-windows all run in the main
    process)"""
    baseline_cache: str | None = None
    """folder of cached baseline episodes (default: $CLUSTERGYM_BASELINE_CACHE, else
    ~/.cache/clustergym/baselines)"""
    checkpoint_every: int = 25_000
    """save a checkpoint every this many steps"""
    torch_threads: int = 1
    """torch CPU threads (1 is fastest for these small networks on a laptop CPU)"""
    device: str = "cpu"
    """where the network runs: cpu, cuda, cuda:N or auto (CUDA when available); the simulator
    stays on the CPU. cpu suits the small default network best (see agents.device)"""


#: the allowed values of the flags that take one of a few
CHOICES: dict[str, list[str]] = {
    "cluster": sorted(clusters.PRESETS), "action_mode": list(ACTION_MODES), "reward": list(REWARDS),
    "algo": sorted(ALGOS), "policy": ["slot", "mlp"], "visible_order": ["auto", *VISIBLE_ORDERS],
    "imitate": ["auto", "none", *TEACHERS],
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The description as written, and every flag's default."""


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """Command-line flags from the :class:`Args` fields; help text from their docstrings. Without
    ``defaults``, a flag not given is left out of the parsed namespace."""
    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(Args)).body[0].body
    for node, nxt in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    parser = argparse.ArgumentParser(prog="python train.py", description=__doc__, formatter_class=HelpFormatter,
                                     epilog="--preset NAME: the flags of a named run, before the others given "
                                            f"(which override them); NAME is one of {', '.join(PRESETS)}: "
                                            "the runs that train the agents shipped in agents/pretrained/")
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if defaults else argparse.SUPPRESS
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=docs.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=default, choices=CHOICES.get(f.name), help=docs.get(f.name))
    return parser


#: ``--trace`` value of the Pollux workloads (goodput jobs, from the shared reference folder)
POLLUX_WORKLOADS = "pollux-workloads"


#: baselines of the presets' final tables: every one but the slow optimisation baselines (Sia,
#: Pollux, Gavel's FTF and makespan objectives, Shockwave), which on a cluster of one GPU type
#: and rigid jobs take seconds per episode and are not the best there
PRESET_BASELINES = "fifo,fjf,sjf,srtf,las,tiresias,gandiva,optimus,themis,gavel,gavel_agnostic,lyra,heet,synergy,lucid,cassini"

#: named runs (``--preset NAME``): the flags of the runs that trained the shipped agents
#: (``agents/pretrained/NAME/training.json`` records each run's command, seed and results); flags
#: given after them on the command line override them. ``{philly}`` is the Philly trace file.
PRESETS: dict[str, list[str]] = {
    name: ["--trace", "{philly}", "--total-timesteps", "300000", "--eval-every", "50000",
           "--baselines", PRESET_BASELINES, "--output", f"runs/{name}", *flags]
    for name, flags in (
        ("philly-clairvoyant", ["--known-durations"]),
        # preemption at LAS's 300 s rounds only: an agent ordering by attained service that may
        # preempt at every event swaps two jobs back and forth at every restart, without end
        ("philly-nonclairvoyant", ["--no-known-durations", "--no-preempt-every-event", "--round-length", "300"]),
    )
} | {
    # the allocate mode (GPU count and batch-size setting per job) on the Pollux workloads
    "pollux-allocate": ["--trace", POLLUX_WORKLOADS, "--cluster", "pollux", "--action-mode", "allocate",
                        "--algo", "maskable_ppo", "--policy", "mlp", "--total-timesteps", "100000",
                        "--eval-every", "25000", "--eval-seeds", "1",
                        "--baselines", "pollux,sia,gavel,gavel_agnostic,lyra,heet,optimus",
                        "--output", "runs/pollux-allocate"],
}


def expand_preset(argv: list[str]) -> list[str]:
    """``argv`` with ``--preset NAME`` replaced by the preset's flags (before the others, which
    override them)."""
    for i, a in enumerate(argv):
        if a == "--preset" or a.startswith("--preset="):
            name = a.partition("=")[2] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            rest = argv[:i] + argv[i + (1 if "=" in a else 2):]
            if name not in PRESETS:
                sys.exit(f"--preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
            flags = PRESETS[name]
            if "{philly}" in flags:
                philly = shared_file(*PHILLY_POLLUX_CSV)
                if philly is None:
                    sys.exit(f"--preset {name} trains on the Philly trace, which is not here: put the shared data "
                             f"folder beside the checkout (../shared) or name it with CLUSTERGYM_SHARED")
                flags = [f.replace("{philly}", str(philly)) for f in flags]
            return flags + expand_preset(rest)
    return list(argv)


def parse_args(argv: list[str] | None = None) -> Args:
    """The :class:`Args` of a command line (defaults where a flag is not given; ``--preset``
    expanded first)."""
    argv = expand_preset(sys.argv[1:] if argv is None else argv)
    args = Args(**vars(build_parser().parse_args(argv)))
    if args.action_mode == "allocate":  # MultiDiscrete with masks: MaskablePPO's MLP policy
        given = given_flags(argv)
        args.algo = args.algo if "algo" in given else "maskable_ppo"
        args.policy = args.policy if "policy" in given else "mlp"
        if (args.algo, args.policy) != ("maskable_ppo", "mlp"):
            sys.exit("--action-mode allocate trains a masked MultiDiscrete action: it needs --algo maskable_ppo "
                     "and --policy mlp")
    try:
        judged_baselines(args.baselines)
    except ValueError as e:
        sys.exit(f"--baselines: {e}")
    for name in ("eval_every", "checkpoint_every"):
        if getattr(args, name) < 0:
            sys.exit(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    if not args.known_durations and (args.imitate == "srtf" or args.visible_order == "remaining"):
        sys.exit("--imitate srtf and --visible-order remaining rank jobs by remaining work: they need --known-durations")
    if args.imitate not in ("auto", "none") and (args.action_mode != "priority" or args.policy != "slot"):
        sys.exit(f"--imitate {args.imitate} clones scores into the slot policy: it needs --action-mode priority "
                 f"and --policy slot")
    return args


def judged_baselines(spec: str) -> list[str]:
    """The baselines of the final table named by ``--baselines`` (registry order; FIFO and the
    validation references always in)."""
    known = baselines.names()
    if spec.strip() == "all":
        return list(known)
    asked = {n.strip() for n in spec.split(",") if n.strip()}
    unknown = sorted(asked - set(known))
    if unknown:
        raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; known: all, {', '.join(known)}")
    asked |= {"fifo", *EVAL_BASELINES}
    return [n for n in known if n in asked]


def given_flags(argv: list[str] | None = None) -> set[str]:
    """The :class:`Args` fields named on the command line, a preset's included (rather than
    left to their defaults)."""
    argv = expand_preset(sys.argv[1:] if argv is None else argv)
    return set(vars(build_parser(defaults=False).parse_args(argv)))


#: the flags that ``--resume`` may change (the others must repeat the run's saved values)
RESUME_FLAGS = ("total_timesteps", "eval_every", "checkpoint_every", "torch_threads", "device")


def resumed_args(out: Path, args: Args, given: set[str]) -> Args:
    """The arguments saved in ``out/args.json`` with the :data:`RESUME_FLAGS` given on the
    command line; the changed ones are saved back, so a later resume keeps them."""
    path = out / "args.json"
    if not path.is_file():
        sys.exit(f"{out}: not a training run (no args.json); start one with: python train.py --output {out}")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        sys.exit(f"{path}: not valid JSON ({e})")
    fields = {f.name for f in dataclasses.fields(Args)}
    if not isinstance(saved, dict) or set(saved) - fields:
        unknown = sorted(set(saved) - fields) if isinstance(saved, dict) else saved
        sys.exit(f"{path}: expected an object of train.py arguments, found unknown {unknown!r}")
    resumed = Args(**{**saved, "resume": args.resume})
    for name in sorted(given - {"resume"}):
        if name not in RESUME_FLAGS and getattr(args, name) != getattr(resumed, name):
            allowed = ", ".join("--" + f.replace("_", "-") for f in RESUME_FLAGS)
            sys.exit(f"--resume {out} continues the run with the arguments in {path}: "
                     f"--{name.replace('_', '-')} {getattr(args, name)!r} differs from its "
                     f"{getattr(resumed, name)!r} (only {allowed} may change)")
    changes = {name: getattr(args, name) for name in given if name in RESUME_FLAGS}
    if any(getattr(resumed, k) != v for k, v in changes.items()):
        resumed = dataclasses.replace(resumed, **changes)
        atomic_write(path, json.dumps({**saved, **changes}, indent=2).encode())
    return resumed


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file, synced, renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def whole_rollouts(steps: int, rollout: int) -> int:
    """``steps`` rounded up to whole rollouts: what PPO's ``learn(steps)`` trains."""
    return -(-steps // rollout) * rollout if steps > 0 else 0


#: policies that reduce to another in train.py's setting (rigid jobs, no CPU or network model),
#: with the condition on the cluster and the reason, for the final table's footnotes
REDUCTIONS: dict[str, tuple[str, Callable[[ClusterSpec], bool], str]] = {
    "gavel_agnostic": ("gavel", lambda spec: len(spec.gpu_types) == 1,
                       "one GPU type: every throughput is equal, so Gavel's LP is its agnostic twin"),
    **{name: ("las", lambda spec: True, "no CPU or memory model: Synergy is its LAS GPU admission")
       for name in ("synergy", "synergy_greedy", "synergy_proportional")},
    "cassini": ("themis", lambda spec: True, "no network model: CASSINI returns its host Themis's decisions"),
    "lyra": ("sjf", lambda spec: True, "no elastic jobs: Lyra is its SJF phase of base demands"),
    "optimus": ("fjf", lambda spec: True,
                "no elastic jobs: Optimus gives each job its request in arrival order, skipping what does not fit"),
}


def identical_footnotes(runs: dict[str, list[float]], spec: ClusterSpec) -> list[str]:
    """One line per group of policies whose results are equal on every window and seed, naming
    why where one policy structurally reduces to another here."""
    groups: dict[tuple[float, ...], list[str]] = {}
    for name, values in runs.items():
        groups.setdefault(tuple(values), []).append(name)
    notes = []
    for members in groups.values():
        if len(members) < 2:
            continue
        reasons = [REDUCTIONS[m][2] for m in members
                   if m in REDUCTIONS and REDUCTIONS[m][0] in members and REDUCTIONS[m][1](spec)]
        why = "; ".join(dict.fromkeys(reasons)) if reasons else "identical results in this setting"
        notes.append(f"{' = '.join(sorted(members))}: {why}")
    return notes


class ResumableCSV(CSVOutputFormat):
    """SB3's CSV log opened for appending, so a resumed run continues the same file.

    ``iterations_before``: the PPO iterations of the run before this resume, added to SB3's
    ``time/iterations`` (which counts from 1 in every ``learn`` call)."""

    def __init__(self, filename: str, iterations_before: int = 0) -> None:
        # "r+" rather than "a": SB3 rewrites the header in place when new keys appear
        self.file = open(filename, "r+" if Path(filename).exists() else "w+")  # closed by Logger.close()
        header = self.file.readline().strip()
        self.keys = header.split(",") if header else []
        self.file.seek(0, 2)
        self.separator = ","
        self.quotechar = '"'
        self.iterations_before = iterations_before

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        if self.iterations_before and "time/iterations" in key_values:
            key_values = {**key_values, "time/iterations": key_values["time/iterations"] + self.iterations_before}
        super().write(key_values, key_excluded, step)


def truncate_csv(path: Path, column: str, upto: int) -> None:
    """Drop the rows of ``path`` logged after step ``upto`` (by a run killed after its last
    checkpoint), and a last row cut short by the kill, so that resuming never duplicates rows.
    The rows kept stay byte for byte as they were."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    if column not in header:
        return
    at = header.index(column)
    keep = lines[:1]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        try:
            if line.endswith("\n") and len(row) == len(header) and float(row[at]) <= upto:
                keep.append(line)
        except ValueError:
            pass
    if len(keep) < len(lines):
        atomic_write(path, "".join(keep).encode())


def rows_logged(out: Path) -> list[str]:
    """The log files of the run in ``out`` that hold at least one row."""
    names = ("progress.csv", "episodes.csv", "eval.csv")
    return [n for n in names if (out / n).is_file() and len((out / n).read_bytes().splitlines()) > 1]


class ProgressBar(BaseCallback):
    """A plain tqdm bar of the steps of this ``learn`` call (SB3's own bar uses tqdm's
    experimental rich front end, which warns on every use)."""

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.locals["total_timesteps"] - self.model.num_timesteps, unit="step", desc="train")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.refresh()
        self.bar.close()


def next_multiple(n: int, every: int) -> float:
    """The first multiple of ``every`` after ``n`` (infinity when ``every`` is 0)."""
    return (n // every + 1) * every if every > 0 else float("inf")


class TrainingMonitor(BaseCallback):
    """Logs episode metrics, runs validation evaluations, keeps the best agent, writes
    checkpoints, stops on a signal.

    ``evaluate(model)`` gives the episodes of the agent and :data:`EVAL_BASELINES` on the
    validation windows; ``keep(model, step, value)`` saves the model as the best so far, called
    when its validation mean avg JCT ``value`` is the lowest so far (the first one on ties; the
    best so far is read back from ``eval.csv`` on a resume). Evaluations and checkpoints happen at the start of a rollout, where the model has been
    updated on exactly ``num_timesteps`` steps: evaluations when a multiple of ``--eval-every``
    was passed, checkpoints at the first rollout of a run without one, when a multiple of
    ``--checkpoint-every`` was passed, and when a stop was requested (the step taken after that
    checkpoint ends the training and is dropped: the checkpoint is where the run continues)."""

    def __init__(self, args: Args, out: Path, evaluate: Callable, save: Callable[[], None],
                 keep: Callable[..., None]) -> None:
        super().__init__()
        self.args, self.out, self.evaluate, self.save, self.keep = args, out, evaluate, save, keep
        #: the step and validation mean avg JCT of the agent kept so far
        self.best: tuple[int, float] | None = best_logged(out / "eval.csv")
        self.stop_requested = False
        #: the step of the checkpoint where a requested stop ended the training
        self.halted_at: int | None = None
        self.next_checkpoint: float = 0
        self.next_eval: float = 0

    def _on_training_start(self) -> None:
        n = self.model.num_timesteps
        fresh = find_checkpoint(self.out) is None
        self.next_checkpoint = n if fresh else next_multiple(n, self.args.checkpoint_every)
        self.next_eval = next_multiple(n, self.args.eval_every)

    def _on_rollout_start(self) -> None:
        n = self.model.num_timesteps
        if n >= self.next_eval:
            self.log_evaluation(n, self.evaluate(self.model), self.model)
            self.next_eval = next_multiple(n, self.args.eval_every)
        if n >= self.next_checkpoint or self.stop_requested:
            self.save()
            self.next_checkpoint = next_multiple(n, self.args.checkpoint_every)
            if self.stop_requested:
                self.halted_at = n

    def _on_step(self) -> bool:
        if self.halted_at is not None:
            return False
        n = self.model.num_timesteps
        rows = []
        for info in self.locals["infos"]:
            m = info.get("episode_metrics")
            if m:
                rows.append({"step": n, **{k: m[k] for k in ("avg_jct", "utilization", "return", "steps", "invalid_actions") if k in m}})
                self.logger.record_mean("episode/avg_jct", m.get("avg_jct", np.nan))
                self.logger.record_mean("episode/utilization", m.get("utilization", np.nan))
        if rows:
            append_rows(self.out / "episodes.csv", rows)
        return True

    def log_evaluation(self, step: int, runs: dict, model) -> None:
        """One row of ``eval.csv`` (split ``validation``): mean avg JCT of the agent and
        :data:`EVAL_BASELINES`; the model is kept as the run's agent if it is the best so far."""
        table = {p: runs[p].mean for p in ("agent", *EVAL_BASELINES)}
        append_rows(self.out / "eval.csv", [{"step": step, "split": "validation",
                                             **{f"{p}_avg_jct": v for p, v in table.items()}}])
        for p, v in table.items():
            self.logger.record(f"eval/{p}_avg_jct", v)
        if self.best is None or table["agent"] < self.best[1]:
            self.best = (step, table["agent"])
            self.keep(model, step, table["agent"])


#: the baselines of the periodic evaluation (beside the agent)
EVAL_BASELINES = ("fifo", "tiresias")


def best_logged(path: Path) -> tuple[int, float] | None:
    """The step and agent mean avg JCT of the best validation row of ``eval.csv`` (the first
    one on ties), or None."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    rows = pd.read_csv(path)
    if "split" in rows.columns:
        rows = rows[rows["split"] == "validation"]
    else:
        return None  # an eval.csv of an older train.py (held-out rows): nothing was kept from it
    if rows.empty:
        return None
    best = rows.loc[rows["agent_avg_jct"].idxmin()]
    return int(best["step"]), float(best["agent_avg_jct"])


def save_best_agent(model, out: Path, step: int, value: float, args: Args, env_config: EnvConfig,
                    windows: WindowSet) -> Path:
    """Write ``model`` as the best agent so far, ``checkpoints/best`` (replacing the previous one
    by renames), with ``selection.json``: the step it comes from and its validation mean avg
    JCT. A finished run copies it to ``agent/``."""
    best = out / "checkpoints" / "best"
    tmp, agent, old = best.with_name("best.tmp"), best, best.with_name("best.old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_agent(model, tmp, algo=args.algo, policy=args.policy, env_config=env_config)
    selection = {"step": int(step), "validation_avg_jct": float(value), "windows": len(windows.windows),
                 "seeds": args.eval_seeds, "num_jobs": windows.num_jobs}
    (tmp / "selection.json").write_text(json.dumps(selection, indent=2))
    if agent.exists():
        shutil.rmtree(old, ignore_errors=True)
        agent.rename(old)
    tmp.rename(agent)
    shutil.rmtree(old, ignore_errors=True)
    return agent


def append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


#: the files of a whole checkpoint (``vecnormalize.pkl`` too with ``--normalize-reward``)
CHECKPOINT_FILES = ("model.zip", "state.pkl")
#: engine attributes rebuilt from the run's arguments (the rest is the state a checkpoint holds)
ENGINE_CONFIG = ("cfg", "spec", "base", "source")
#: vector-env attributes a checkpoint leaves out (the engine is saved apart; the wall clock)
VEC_ENV_EXCLUDED = ("engine", "_t0")


def find_checkpoint(out: Path) -> Path | None:
    """``checkpoints/last`` of the run in ``out``, else ``checkpoints/old`` (left alone by a kill
    between the two renames of :func:`save_checkpoint`), whichever holds a whole checkpoint."""
    for name in ("last", "old"):
        path = out / "checkpoints" / name
        if all((path / f).is_file() for f in CHECKPOINT_FILES):
            return path
    return None


def training_state(model, venv) -> dict:
    """Everything beside the model's weights and VecNormalize's statistics that the rest of the
    run depends on: the step counter, every RNG, the envs (episodes in progress included),
    VecNormalize's running returns and the logger's values not yet written."""
    eng, vec_norm = venv.unwrapped.engine, model.get_vec_normalize_env()
    logger = model.logger
    return {
        "num_timesteps": model.num_timesteps,
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - SB3 samples minibatches from the legacy global stream
        "torch": torch.get_rng_state(),
        "action_space": model.action_space.np_random.bit_generator.state,
        "env_rngs": [eng.rng(i).bit_generator.state for i in range(eng.E)],
        "engine": {k: v for k, v in vars(eng).items() if k not in ENGINE_CONFIG},
        "vec_env": {k: v for k, v in vars(venv.unwrapped).items() if k not in VEC_ENV_EXCLUDED},
        "vecnormalize_returns": None if vec_norm is None else vec_norm.returns.copy(),
        "logger": {"values": dict(logger.name_to_value), "counts": dict(logger.name_to_count),
                   "excluded": dict(logger.name_to_excluded)},
    }


def restore_training_state(state: dict, model, venv) -> None:
    """Put back what :func:`training_state` saved (after the model was loaded, which reseeds)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    model.action_space.np_random.bit_generator.state = state["action_space"]
    vars(venv.unwrapped.engine).update(state["engine"])
    vars(venv.unwrapped).update(state["vec_env"])
    if model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().returns = state["vecnormalize_returns"].copy()
    logger = model.logger
    logger.name_to_value.update(state["logger"]["values"])
    logger.name_to_count.update(state["logger"]["counts"])
    logger.name_to_excluded.update(state["logger"]["excluded"])
    model.num_timesteps = state["num_timesteps"]


def save_checkpoint(model, out: Path, venv) -> None:
    """Model, VecNormalize and :func:`training_state`, written to ``checkpoints/tmp`` and synced,
    then swapped in by renames: ``last`` -> ``old``, ``tmp`` -> ``last``, ``old`` removed. A kill
    at any point leaves a whole checkpoint in ``last`` or else in ``old`` (never a partial one
    in either: ``old`` is only removed while ``last`` is whole)."""
    ckpt = out / "checkpoints"
    tmp, last, old = ckpt / "tmp", ckpt / "last", ckpt / "old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    if model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().save(str(tmp / "vecnormalize.pkl"))
    (tmp / "state.pkl").write_bytes(pickle.dumps(training_state(model, venv)))
    for path in (*tmp.iterdir(), tmp):
        sync(path)
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        last.rename(old)
    tmp.rename(last)
    sync(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def sync(path: Path) -> None:
    """Flush a file or a folder's entries to disk (so a rename never points at unwritten data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(checkpoint: Path, args: Args, venv: GpuClusterVecEnv, train_env) -> tuple:
    """The model of a checkpoint on the training env (VecNormalize restored with
    ``--normalize-reward``) and the checkpoint's :func:`training_state`, which the caller puts
    back once the model has its logger (:func:`restore_training_state`). A checkpoint without
    the envs' state (written by an older ``train.py``) restores the RNGs only, and the episodes
    in progress restart."""
    try:
        state = pickle.loads((checkpoint / "state.pkl").read_bytes())
        if args.normalize_reward:
            train_env = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), venv)
        exact = "engine" in state
        model = ALGOS[args.algo].load(checkpoint / "model.zip", env=train_env, device=resolve_device(args.device, log=None),
                                      force_reset=not exact)
    except (OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as e:
        sys.exit(f"{checkpoint}: cannot read the checkpoint ({type(e).__name__}: {e})")
    if not exact:
        print(f"{checkpoint}: a checkpoint without the envs' state: the episodes under way restart")
        for i, s in enumerate(state["env_rngs"]):
            venv.engine.rng(i).bit_generator.state = s
        venv.seed(None)  # keep the restored streams on the reset that starts the training
        np.random.set_state(state["numpy"])  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        model.num_timesteps = state["num_timesteps"]
    return model, state




def pollux_workloads() -> pd.DataFrame:
    """The eight Pollux workloads one after another (:func:`traces.pollux.load_workloads`)."""
    root = shared_file(*POLLUX_REFERENCE)
    if root is None:
        sys.exit(f"--trace {POLLUX_WORKLOADS} reads ../shared/{'/'.join(POLLUX_REFERENCE)}, which is not here: "
                 f"put the shared data beside the checkout or set CLUSTERGYM_SHARED")
    from traces.pollux import load_workloads

    return load_workloads(root)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    # ---------------------------------------------------------------- arguments and output
    args = parse_args(argv)
    checkpoint = None
    if args.resume:
        out = Path(args.resume)
        args = resumed_args(out, args, given_flags(argv))
        checkpoint = find_checkpoint(out)
        if checkpoint is None:
            if rows_logged(out):
                sys.exit(f"{out}: no whole checkpoint to resume from (neither checkpoints/last nor checkpoints/old "
                         f"holds {' and '.join(CHECKPOINT_FILES)}), yet {', '.join(rows_logged(out))} hold rows: "
                         f"resuming would repeat them; start the run again in another --output")
            print(f"{out}: no checkpoint and nothing logged yet: starting at step 0 with its saved arguments")
    else:
        out = Path(args.output)
        if find_checkpoint(out) is not None:
            sys.exit(f"{out} already holds a run; continue it with --resume {out} or choose another --output")
        if rows_logged(out):
            sys.exit(f"{out} holds the logs of a run ({', '.join(rows_logged(out))}) but no checkpoint; "
                     f"choose another --output")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "args.json", json.dumps(dataclasses.asdict(args), indent=2).encode())
    set_torch_threads(args.torch_threads)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        sys.exit(f"--device: {e}")
    set_random_seed(args.seed)
    started = time.time()

    # ---------------------------------------------------------------- traces: split by time
    spec = clusters.get(args.cluster)
    trace = synthetic(args.trace_jobs, load=args.load, cluster=spec, seed=args.seed) if args.trace is None \
        else pollux_workloads() if args.trace == POLLUX_WORKLOADS else load_trace(args.trace)
    trace, dropped = drop_oversize(trace, spec, source=args.trace or "synthetic")
    if dropped:  # a gang larger than every GPU pool of the cluster could never run
        print(f"dropped {dropped} of {len(trace) + dropped} jobs that need more than "
              f"{max(spec.gpus_per_type().values())} GPUs")
    if args.trace is not None:
        trace = window(trace, 0.0, num_jobs=len(trace), load=args.load, cluster=spec)
    # train | validation (the end of the training period) | test (held out; the final table only)
    try:
        split = split_by_time(trace, args.train_fraction, args.validation_fraction)
    except ValueError as e:
        sys.exit(f"--train-fraction / --validation-fraction: {e}")
    train_trace = split.train
    seeds = [args.seed + s for s in range(args.eval_seeds)]
    cache = EpisodeCache(args.baseline_cache)
    # baseline episodes do not depend on the agent: they run in worker processes during training
    # (a few windows replay faster here than worker processes start)
    pool = worker_pool(args.eval_workers if args.eval_windows >= 8 else 1)
    try:
        windows = {part: contended_windows(getattr(split, part), args.num_jobs, args.eval_windows, spec, split=part,
                                           min_waiting_fraction=args.eval_min_waiting, executor=pool)
                   for part in ("validation", "test")}
    except ValueError as e:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        sys.exit(f"--eval-windows: {e}")
    background = {"validation": BaselineJob(windows["validation"], spec, EVAL_BASELINES, seeds, cache, pool),
                  "test": BaselineJob(windows["test"], spec, judged_baselines(args.baselines), seeds, cache, pool)}
    print(f"trace: {len(trace)} jobs ({args.trace or 'synthetic'}): train {len(split.train)}, validation "
          f"{len(split.validation)}, test {len(split.test)}; evaluation windows on {spec!r}:")
    for w in windows.values():
        print(f"  {w.describe()}")
    print(f"  baseline episodes: {sum(b.cached for b in background.values())} cached in {cache.root}, "
          f"{sum(b.computed for b in background.values())} to compute in the background")
    prepared = time.time()

    # ---------------------------------------------------------------- envs
    priority = args.action_mode == "priority"
    order = args.visible_order if args.visible_order != "auto" else (
        "remaining" if args.known_durations else "attained")
    env_config = EnvConfig(
        trace=train_trace, cluster=spec, num_jobs=args.num_jobs, load=None, max_slots=args.max_slots,
        action_mode=args.action_mode, known_durations=args.known_durations, reward=args.reward,
        preemption=args.preemption, round_length=args.round_length, visible_order=order,
        serve_hidden=args.serve_hidden and priority,
        preempt_every_event=args.preempt_every_event and priority and args.preemption,
    )
    venv = GpuClusterVecEnv(args.num_envs, seed=args.seed, config=env_config)
    train_env = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=args.gamma) if args.normalize_reward else venv

    baseline_runs: dict[str, dict[str, PolicyRuns]] = {}

    def baseline_results(part: str) -> dict[str, PolicyRuns]:
        """The baselines' episodes on the ``part`` windows (waiting for the workers once)."""
        if part not in baseline_runs:
            baseline_runs[part] = background[part].result()
        return baseline_runs[part]

    def jcts(policy_source, part: str) -> PolicyRuns:
        """The agent (a model or an Agent, deterministic actions) on every window and seed of
        ``part``, through envs.simulate_many (every episode stepped together) as the baselines."""
        agent = policy_source if isinstance(policy_source, Agent) else Agent(
            policy_source, args.algo, args.policy, {k: getattr(env_config, k) for k in ENV_KEYS})
        return run_policy(windows[part], seeds, spec, lambda: AgentPolicy(agent), args.known_durations)

    timing = {"validation": 0.0}

    def evaluate(model) -> dict[str, PolicyRuns]:
        """The agent and :data:`EVAL_BASELINES` on the validation windows."""
        t = time.perf_counter()
        runs = {"agent": jcts(model, "validation"), **baseline_results("validation")}
        timing["validation"] += time.perf_counter() - t
        return runs

    def keep_best(model, step: int, value: float) -> None:
        """Save ``model`` as the best on validation so far, with where it came from."""
        save_best_agent(model, out, step, value, args, env_config, windows["validation"])

    def stop_background() -> None:
        for b in background.values():
            b.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # ---------------------------------------------------------------- model (fresh or resumed)
    hyper = dict(n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
                 learning_rate=args.learning_rate, gamma=args.gamma, gae_lambda=args.gae_lambda,
                 ent_coef=args.ent_coef)
    extra_policy = {"log_std_init": args.log_std_init} if args.action_mode == "priority" else {}
    rollout = args.n_steps * args.num_envs
    if checkpoint is not None:
        model, state = load_checkpoint(checkpoint, args, venv, train_env)
        for name, col in (("progress.csv", "time/total_timesteps"), ("episodes.csv", "step"), ("eval.csv", "step")):
            truncate_csv(out / name, col, state["num_timesteps"])
    else:
        model = make_model(args.algo, args.policy, train_env, env_config, seed=args.seed, hidden=args.hidden,
                           policy_extra=extra_policy, device=str(device), **hyper)
        state = None
        teacher = args.imitate if args.imitate != "auto" else ("srtf" if args.known_durations else "las")
        if teacher != "none" and priority and args.policy == "slot" and args.imitate_steps > 0:
            clone(model, env_config, teacher, steps=args.imitate_steps, log_std=args.imitate_log_std, seed=args.seed)
    csv_log = ResumableCSV(str(out / "progress.csv"), iterations_before=model.num_timesteps // rollout)
    model.set_logger(Logger(str(out), [csv_log, TensorBoardOutputFormat(str(out / "tb"))]))
    if state is not None and "engine" in state:
        restore_training_state(state, model, venv)
    if checkpoint is not None:
        print(f"resumed {out} at step {model.num_timesteps} from {checkpoint.relative_to(out)}")

    # ---------------------------------------------------------------- callbacks and signals
    monitor = TrainingMonitor(args, out, evaluate, lambda: save_checkpoint(model, out, venv), keep_best)

    def request_stop(signum, _frame):
        print(f"\nsignal {signal.Signals(signum).name}: finishing this rollout, saving a checkpoint and stopping",
              flush=True)
        monitor.stop_requested = True

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    # ---------------------------------------------------------------- learn
    # PPO learns in whole rollouts: ask for what it will train, so the progress bar's total is true
    remaining = whole_rollouts(args.total_timesteps - model.num_timesteps, rollout)
    try:
        if remaining > 0:
            print(f"training {remaining:,} steps ({args.total_timesteps - model.num_timesteps:,} rounded up to whole "
                  f"rollouts of {args.n_steps} steps x {args.num_envs} envs)")
            model.learn(remaining, callback=CallbackList([monitor, ProgressBar()]), reset_num_timesteps=False)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        model.logger.close()
    if monitor.halted_at is not None:
        model.num_timesteps = monitor.halted_at  # the step taken after the stop's checkpoint is not kept
    elif remaining > 0 or checkpoint is None:
        save_checkpoint(model, out, venv)
    for name in ("agent_last", "agent"):  # agent/: the model at a stop, until the run finishes
        save_agent(model, out / name, algo=args.algo, policy=args.policy, env_config=env_config)
    trained = time.time()
    if monitor.stop_requested:
        stop_background()
        print(f"stopped at step {model.num_timesteps}; continue with: python train.py --resume {out}")
        return pd.DataFrame()

    # ---------------------------------------------------------------- final table (test windows)
    try:
        final_validation = timing["validation"]
        if not eval_logged_at(out / "eval.csv", model.num_timesteps):  # the last model is a candidate too
            monitor.log_evaluation(model.num_timesteps, evaluate(model), model)
        shutil.rmtree(out / "agent")
        shutil.copytree(out / "checkpoints" / "best", out / "agent")  # the agent: the best on validation
        kept = json.loads((out / "agent" / "selection.json").read_text())
        if monitor.best is not None and kept["step"] != monitor.best[0]:
            print(f"warning: agent/ comes from step {kept['step']}, yet eval.csv's best validation row is step "
                  f"{monitor.best[0]} (a run resumed with fewer --total-timesteps than it had evaluated)")
        judging = time.time()
        test_baselines = baseline_results("test")
        waited = time.time()
        runs = {"agent": jcts(load_agent(out / "agent", device=str(device)), "test"), **test_baselines}
    finally:
        stop_background()
    done = time.time()
    oracle = {**background["test"].oracle, "agent": args.known_durations}
    results = final_table(runs, oracle)
    best_any = results.loc[results.policy != "agent", "avg_jct"].min()
    results.insert(results.columns.get_loc("p99_jct") + 1, "vs_best_baseline", results["avg_jct"] / best_any)
    results.to_csv(out / "results.csv", index=False)
    print_table(results, windows["test"], args, spec, kept, model.num_timesteps)
    notes = identical_footnotes({p: r.avg_jct.ravel().tolist() for p, r in runs.items()}, spec)
    if notes:
        print("\nidentical on every window and seed:")
        for note in notes:
            print(f"  {note}")
    job = background["test"]
    periodic = final_validation  # the validation evaluations during training (the last model's after)
    print(f"\ntime: {prepared - started:,.0f} s setup (split, choosing windows), "
          f"{trained - prepared - periodic:,.0f} s training, {timing['validation']:,.0f} s "
          f"validation evaluations, {waited - judging:,.0f} s waiting for the baselines after training "
          f"({job.computed} test episodes computed in the background by {args.eval_workers} worker(s), "
          f"{job.cached} cached), {done - waited:,.0f} s judging the agent; {done - started:,.0f} s in all")
    own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(f"CPU: {own.ru_utime + own.ru_stime:,.0f} s in this process, {workers.ru_utime + workers.ru_stime:,.0f} s "
          f"in worker processes")
    return results


def print_table(results: pd.DataFrame, windows: WindowSet, args: Args, spec: ClusterSpec, kept: dict,
                steps: int) -> None:
    """The final table: the agent's track ranked first, then the other track's baselines."""
    track = "clairvoyant" if args.known_durations else "non-clairvoyant"
    other = "non-clairvoyant" if args.known_durations else "clairvoyant"
    best = results.attrs["best"]

    def ci(row, col: str) -> str:
        if not np.isfinite(row[col]):
            return "-"
        return f"{row[col]:.3f} [{row[col + '_low']:.3f}, {row[col + '_high']:.3f}]"

    def show(rows: pd.DataFrame) -> None:
        if rows.empty:
            print("  (no policy)")
            return
        view = pd.DataFrame({
            "policy": rows["policy"], "oracle": np.where(rows["oracle"], "*", ""),
            "avg JCT": rows["avg_jct"].map("{:,.0f}".format), "p99 JCT": rows["p99_jct"].map("{:,.0f}".format)})
        for name, col in ((best["non-clairvoyant"], "vs_best_nonoracle"), (best["clairvoyant"], "vs_best_oracle")):
            if name is not None:
                view[f"vs {name}"] = [ci(r, col) for _, r in rows.iterrows()]
        view["agent W/T/L"] = rows["agent_w/t/l"].to_numpy()
        print(view.to_string(index=False))

    seeds = "seeds replay the same episodes (every job names its model)" if not any(
        seed_matters(w) for w in windows.windows) else "seeds differ"
    print(f"\ntest evaluation: {len(windows.windows)} windows x {args.eval_seeds} seeds ({seeds}), "
          f"{windows.num_jobs} jobs each, on {spec!r}")
    print(f"  {windows.describe()}")
    print(f"  agent: step {kept['step']:,} of {steps:,} (best validation mean avg JCT, "
          f"{kept['validation_avg_jct']:,.0f} s); track: {track} (durations "
          f"{'known' if args.known_durations else 'hidden'}); * = oracle, uses true durations")
    print(f"  ratios: mean avg JCT / that of the best non-oracle ({best['non-clairvoyant'] or 'none'}) or oracle "
          f"({best['clairvoyant'] or 'none'}) baseline, paired 95% bootstrap CI over windows; p99: over all jobs of all "
          f"episodes; W/T/L: windows where the agent's avg JCT is lower / within "
          f"{TIE_TOLERANCE:.1%} / higher")
    in_track = results["track"] == track
    print(f"\n{track} track (the agent's):")
    show(results[in_track])
    print(f"\n{other} track (not the agent's; for reference):")
    show(results[~in_track])
    agent = results[results.policy == "agent"].iloc[0]
    ref, col = (best["clairvoyant"], "vs_best_oracle") if args.known_durations else \
        (best["non-clairvoyant"], "vs_best_nonoracle")
    if ref is None:
        print(f"\nagent avg JCT {agent['avg_jct']:,.0f} s; no {track} baseline was evaluated to rank it against")
        return
    ref_row = results[results.policy == ref].iloc[0]
    print(f"\nagent avg JCT {agent['avg_jct']:,.0f} s = {ci(agent, col)} x the best {track} baseline "
          f"({ref}, {ref_row['avg_jct']:,.0f} s); agent W/T/L against it: {ref_row['agent_w/t/l']}")


def eval_logged_at(path: Path, step: int) -> bool:
    """Whether ``eval.csv`` already ends with the evaluation at ``step`` (a finished run resumed)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    steps = pd.read_csv(path)["step"]
    return len(steps) > 0 and int(steps.iloc[-1]) == step


if __name__ == "__main__":
    main()
