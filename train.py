r"""Train a learned scheduler on GpuCluster-v0 and judge it against the classic baselines.

Read top to bottom: arguments, traces (train / held-out split by time), envs, model (or resume),
callbacks (episode metrics, checkpoints, periodic held-out evaluation, clean interruption),
learning, and the final table of the agent against every baseline on the held-out windows.

    python train.py                                   # synthetic default, about 4 minutes on 2 CPUs
    python train.py --trace ../shared/traces/philly/pollux_philly.csv.gz --total-timesteps 300000 \
        --eval-every 100000 --output runs/philly      # the real Philly trace, about 3 minutes
    python train.py --resume runs/default             # continue a killed or finished run

PPO trains in whole rollouts of ``--n-steps`` x ``--num-envs`` steps (4,096 by default), so
``--total-timesteps`` is rounded up to a whole number of rollouts (150,000 -> 151,552).

Outputs in ``--output``: ``args.json``, ``progress.csv`` and TensorBoard files (SB3 logger),
``episodes.csv`` (training episode metrics), ``eval.csv`` (held-out evaluation of the agent, FIFO
and Tiresias every ``--eval-every`` steps, at the end of a rollout, and of the final agent: its
last row is the final table's), ``checkpoints/last/`` (model + RNG state), ``agent/`` (the final
agent, loadable with ``agents.load_agent``) and ``results.csv`` (final table).
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import inspect
import json
import pickle
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
from agents.threads import set_torch_threads
from envs import EnvConfig, simulate
from envs.engine import ACTION_MODES, REWARDS
from envs.sb3 import GpuClusterVecEnv
from traces import clusters, load_trace, synthetic, window
from traces.clusters import ClusterSpec


@dataclass
class Args:
    output: str = "runs/default"
    """folder for logs, checkpoints, the agent and the results table"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint (its saved arguments are used)"""
    seed: int = 0
    """seed of everything: trace, envs, network initialisation, evaluation"""
    trace: str | None = None
    """trace file (any format traces.load_trace reads); none: the synthetic generator"""
    trace_jobs: int = 20_000
    """jobs of the synthetic trace (ignored with --trace)"""
    train_fraction: float = 0.7
    """the first fraction of the trace (by submit time) trains; the rest is held out"""
    cluster: str = "tiny"
    """cluster preset (traces.clusters.PRESETS)"""
    load: float = 1.0
    """offered load of the trace on the cluster (the whole trace is rescaled to it)"""
    num_jobs: int = 64
    """jobs per episode window (training and evaluation)"""
    max_slots: int = 16
    """visible job slots K"""
    action_mode: str = "priority"
    """'priority' (a score per slot; algo ppo) or 'pick' (Discrete(K+1), masked; algo maskable_ppo)"""
    preemption: bool = True
    """preempt at round boundaries (priority mode: running jobs compete for GPUs every round)"""
    round_length: float = 1800.0
    """seconds between round boundaries (with preemption)"""
    known_durations: bool = True
    """whether the agent sees the remaining work of each job (the baselines SJF/SRTF need it too)"""
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
    learning_rate: float = 3e-4
    """Adam learning rate"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    ent_coef: float = 0.01
    """entropy bonus"""
    normalize_reward: bool = True
    """scale rewards by a running estimate of the return's std (SB3 VecNormalize); the heavy-tailed
    time between events makes raw rewards vary over orders of magnitude"""
    log_std_init: float = -1.5
    """initial log std of the Gaussian scores (priority mode; scores live in [-1, 1])"""
    eval_every: int = 50_000
    """evaluate on the held-out windows every this many steps (0: only at the end)"""
    eval_windows: int = 6
    """held-out windows for evaluation (evenly spaced over the held-out part)"""
    eval_seeds: int = 2
    """seeds per window (model draw for jobs without a model)"""
    checkpoint_every: int = 25_000
    """save a checkpoint every this many steps"""
    torch_threads: int = 1
    """torch CPU threads (1 is fastest for these small networks on a laptop CPU)"""


#: the allowed values of the flags that take one of a few
CHOICES: dict[str, list[str]] = {
    "cluster": sorted(clusters.PRESETS), "action_mode": list(ACTION_MODES), "reward": list(REWARDS),
    "algo": sorted(ALGOS), "policy": ["slot", "mlp"],
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The description as written, and every flag's default."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Command-line flags from the :class:`Args` fields; help text from their docstrings."""
    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(Args)).body[0].body
    for node, nxt in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    parser = argparse.ArgumentParser(prog="python train.py", description=__doc__, formatter_class=HelpFormatter)
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=docs.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=f.default, choices=CHOICES.get(f.name), help=docs.get(f.name))
    return Args(**vars(parser.parse_args(argv)))


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
    """SB3's CSV log opened for appending, so a resumed run continues the same file."""

    def __init__(self, filename: str) -> None:
        # "r+" rather than "a": SB3 rewrites the header in place when new keys appear
        self.file = open(filename, "r+" if Path(filename).exists() else "w+")  # closed by Logger.close()
        header = self.file.readline().strip()
        self.keys = header.split(",") if header else []
        self.file.seek(0, 2)
        self.separator = ","
        self.quotechar = '"'


def truncate_csv(path: Path, column: str, upto: int) -> None:
    """Drop the rows of ``path`` logged after step ``upto`` (left by a run killed after its last
    checkpoint), so that resuming never duplicates rows."""
    if not path.exists() or path.stat().st_size == 0:
        return
    df = pd.read_csv(path)
    if column in df.columns:
        df[df[column] <= upto].to_csv(path, index=False)


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


class TrainingMonitor(BaseCallback):
    """Logs episode metrics, writes checkpoints, runs held-out evaluations, stops on a signal.

    Evaluations run at the start of a rollout, where the model has been updated on exactly
    ``num_timesteps`` steps (mid-rollout, the policy still is the one of the last update)."""

    def __init__(self, args: Args, out: Path, env_config: EnvConfig, evaluate) -> None:
        super().__init__()
        self.args, self.out, self.env_config, self.evaluate = args, out, env_config, evaluate
        self.stop_requested = False
        self.next_checkpoint = self.next_eval = 0

    def _on_training_start(self) -> None:
        n = self.model.num_timesteps
        self.next_checkpoint = n + self.args.checkpoint_every
        self.next_eval = n + self.args.eval_every if self.args.eval_every else float("inf")

    def _on_step(self) -> bool:
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
        if n >= self.next_checkpoint:
            save_checkpoint(self.model, self.out, self.training_env)
            self.next_checkpoint += self.args.checkpoint_every
        return not self.stop_requested

    def _on_rollout_start(self) -> None:
        n = self.model.num_timesteps
        if n >= self.next_eval:
            self.log_evaluation(n, self.evaluate(self.model, EVAL_BASELINES))
            while self.next_eval <= n:
                self.next_eval += self.args.eval_every

    def log_evaluation(self, step: int, runs: dict[str, list[float]]) -> None:
        """One row of ``eval.csv``: mean avg JCT of the agent and :data:`EVAL_BASELINES`."""
        table = {p: float(np.mean(runs[p])) for p in ("agent", *EVAL_BASELINES)}
        append_rows(self.out / "eval.csv", [{"step": step, **{f"{p}_avg_jct": v for p, v in table.items()}}])
        for p, v in table.items():
            self.logger.record(f"eval/{p}_avg_jct", v)


#: the baselines of the periodic evaluation (beside the agent)
EVAL_BASELINES = ("fifo", "tiresias")


def append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def save_checkpoint(model, out: Path, venv) -> None:
    """Model and every RNG stream, written to a temporary folder then swapped in atomically."""
    tmp, last = out / "checkpoints" / "tmp", out / "checkpoints" / "last"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    if isinstance(model.get_env(), VecNormalize):
        model.get_env().save(str(tmp / "vecnormalize.pkl"))
    state = {
        "num_timesteps": model.num_timesteps,
        "env_rngs": [rng.bit_generator.state for rng in venv.unwrapped.engine.rngs],
        "numpy": np.random.get_state(),  # noqa: NPY002 - SB3 seeds the legacy global stream
        "torch": torch.get_rng_state(),
    }
    (tmp / "state.pkl").write_bytes(pickle.dumps(state))
    old = out / "checkpoints" / "old"
    shutil.rmtree(old, ignore_errors=True)
    if last.exists():
        last.rename(old)
    tmp.rename(last)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    # ---------------------------------------------------------------- arguments and output
    args = parse_args(argv)
    if args.resume:
        out = Path(args.resume)
        saved = json.loads((out / "args.json").read_text())
        cli = {k: v for k, v in vars(args).items() if k in ("total_timesteps", "resume")}
        args = Args(**{**saved, **cli})
    else:
        out = Path(args.output)
        if (out / "checkpoints" / "last").exists():
            sys.exit(f"{out} already holds a run; continue it with --resume {out} or choose another --output")
        out.mkdir(parents=True, exist_ok=True)
        (out / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    set_torch_threads(args.torch_threads)
    set_random_seed(args.seed)
    started = time.time()

    # ---------------------------------------------------------------- traces: split by time
    spec = clusters.get(args.cluster)
    if args.trace is None:
        trace = synthetic(args.trace_jobs, load=args.load, cluster=spec, seed=args.seed)
    else:
        trace = load_trace(args.trace)
        biggest = max(spec.gpus_per_type().values())
        too_big = trace["num_gpus"] > biggest
        if too_big.any():  # a gang larger than every GPU pool of the cluster could never run
            print(f"dropped {int(too_big.sum())} of {len(trace)} jobs that need more than {biggest} GPUs")
            trace = trace[~too_big].reset_index(drop=True)
        trace = window(trace, 0.0, num_jobs=len(trace), load=args.load, cluster=spec)
    cut = int(len(trace) * args.train_fraction)
    train_trace = trace.iloc[:cut].reset_index(drop=True)
    held_out = trace.iloc[cut:].reset_index(drop=True)
    held_out["submit_time"] -= held_out["submit_time"].iloc[0]
    starts = np.linspace(0, len(held_out) - args.num_jobs, args.eval_windows).astype(int)
    eval_windows = [window(held_out, float(held_out["submit_time"][i]), num_jobs=args.num_jobs) for i in starts]
    print(f"trace: {len(trace)} jobs ({args.trace or 'synthetic'}), train {len(train_trace)}, held out "
          f"{len(held_out)}; {len(eval_windows)} evaluation windows of {args.num_jobs} jobs on {spec!r}")

    # ---------------------------------------------------------------- envs
    env_config = EnvConfig(
        trace=train_trace, cluster=spec, num_jobs=args.num_jobs, load=None, max_slots=args.max_slots,
        action_mode=args.action_mode, known_durations=args.known_durations, reward=args.reward,
        preemption=args.preemption, round_length=args.round_length,
    )
    venv = GpuClusterVecEnv(args.num_envs, seed=args.seed, config=env_config)
    train_env = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=args.gamma) if args.normalize_reward else venv

    def evaluate(policy_source, names) -> dict[str, list[float]]:
        """Avg JCT on every held-out window and seed (window-major): the agent (a model or an
        Agent, deterministic actions) and the named baselines, each through envs.simulate."""
        results = {}
        if policy_source is not None:
            agent = policy_source if isinstance(policy_source, Agent) else Agent(
                policy_source, args.algo, args.policy, {k: getattr(env_config, k) for k in ENV_KEYS})
            results["agent"] = jcts(lambda: AgentPolicy(agent), args.known_durations)
        for name in names:
            oracle = baselines.get(name).needs_durations
            results[name] = jcts(lambda name=name: baselines.get(name), oracle or args.known_durations)
        return results

    def jcts(make_policy, known: bool) -> list[float]:
        return [float(simulate(w, spec, make_policy(), known_durations=known, seed=args.seed + s).metrics["avg_jct"])
                for w in eval_windows for s in range(args.eval_seeds)]

    # ---------------------------------------------------------------- model (fresh or resumed)
    hyper = dict(n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
                 learning_rate=args.learning_rate, gamma=args.gamma, gae_lambda=args.gae_lambda,
                 ent_coef=args.ent_coef)
    extra_policy = {"log_std_init": args.log_std_init} if args.action_mode == "priority" else {}
    last = out / "checkpoints" / "last"
    if args.resume and last.exists():
        algo_cls = type(make_model(args.algo, args.policy, venv, env_config, seed=args.seed, hidden=args.hidden,
                           policy_extra=extra_policy, **hyper))
        if args.normalize_reward:
            train_env = VecNormalize.load(str(last / "vecnormalize.pkl"), venv)
        model = algo_cls.load(last / "model.zip", env=train_env, device="cpu")
        state = pickle.loads((last / "state.pkl").read_bytes())
        for rng, s in zip(venv.engine.rngs, state["env_rngs"], strict=True):
            rng.bit_generator.state = s
        venv.seed(None)  # keep the restored streams on the reset below
        np.random.set_state(state["numpy"])  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        model.num_timesteps = state["num_timesteps"]
        for name, col in (("progress.csv", "time/total_timesteps"), ("episodes.csv", "step"), ("eval.csv", "step")):
            truncate_csv(out / name, col, model.num_timesteps)
        print(f"resumed {out} at step {model.num_timesteps}")
    else:
        model = make_model(args.algo, args.policy, train_env, env_config, seed=args.seed, hidden=args.hidden,
                           policy_extra=extra_policy, **hyper)
    model.set_logger(Logger(str(out), [ResumableCSV(str(out / "progress.csv")), TensorBoardOutputFormat(str(out / "tb"))]))

    # ---------------------------------------------------------------- callbacks and signals
    monitor = TrainingMonitor(args, out, env_config, evaluate)

    def request_stop(signum, _frame):
        print(f"\nsignal {signal.Signals(signum).name}: saving a checkpoint and stopping", flush=True)
        monitor.stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # ---------------------------------------------------------------- learn
    # PPO learns in whole rollouts: ask for what it will train, so the progress bar's total is true
    rollout = args.n_steps * args.num_envs
    remaining = whole_rollouts(args.total_timesteps - model.num_timesteps, rollout)
    if remaining > 0:
        print(f"training {remaining:,} steps ({args.total_timesteps - model.num_timesteps:,} rounded up to whole "
              f"rollouts of {args.n_steps} steps x {args.num_envs} envs)")
        model.learn(remaining, callback=CallbackList([monitor, ProgressBar()]), reset_num_timesteps=False)
    save_checkpoint(model, out, venv)
    agent_dir = save_agent(model, out / "agent", algo=args.algo, policy=args.policy, env_config=env_config)
    trained = time.time()
    if monitor.stop_requested:
        print(f"stopped at step {model.num_timesteps}; continue with: python train.py --resume {out}")
        return pd.DataFrame()

    # ---------------------------------------------------------------- final table
    runs = evaluate(load_agent(agent_dir), baselines.names())
    table = {p: float(np.mean(v)) for p, v in runs.items()}
    if not eval_logged_at(out / "eval.csv", model.num_timesteps):
        monitor.log_evaluation(model.num_timesteps, runs)  # eval.csv's last row: this table's agent
    rows = [{"policy": p, "avg_jct": v} for p, v in table.items()]
    results = pd.DataFrame(rows).sort_values("avg_jct").reset_index(drop=True)
    best = results[results.policy != "agent"].iloc[0]
    results["vs_best_baseline"] = results["avg_jct"] / best["avg_jct"]
    results.to_csv(out / "results.csv", index=False)
    print(f"\nheld-out evaluation: {len(eval_windows)} windows x {args.eval_seeds} seeds, "
          f"{args.num_jobs} jobs each, on {spec!r} (durations {'known' if args.known_durations else 'hidden'}; "
          f"sjf/srtf always use them)")
    print(results.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    notes = identical_footnotes(runs, spec)
    if notes:
        print("\nidentical on every window and seed:")
        for note in notes:
            print(f"  {note}")
    agent_jct = table["agent"]
    done = time.time()
    print(f"\nagent avg JCT {agent_jct:,.0f} s = {agent_jct / best['avg_jct']:.3f} x the best baseline "
          f"({best['policy']}, {best['avg_jct']:,.0f} s), after {model.num_timesteps:,} training steps; "
          f"eval.csv's last row is this agent")
    print(f"time: {trained - started:,.0f} s setting up and training (periodic evaluations included), "
          f"{done - trained:,.0f} s judging {len(table)} policies, {done - started:,.0f} s in all")
    return results


def eval_logged_at(path: Path, step: int) -> bool:
    """Whether ``eval.csv`` already ends with the evaluation at ``step`` (a finished run resumed)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    steps = pd.read_csv(path)["step"]
    return len(steps) > 0 and int(steps.iloc[-1]) == step


if __name__ == "__main__":
    main()
