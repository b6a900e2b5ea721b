"""Command line of the leaderboard (``python -m leaderboard --help``)."""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
import warnings
from pathlib import Path

from leaderboard.suite import MissingDataError, SuiteError, load_suite, suite_names


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m leaderboard",
        description="Run every policy on the same trace windows and seeds; write a table, a CSV and plots.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the bundled suites, their expected time and whether their data is present")
    r = sub.add_parser("run", help="run a suite (cached cells are reused; an interrupted run resumes)")
    r.add_argument("suite", help="a bundled suite name (see `list`) or the path of a suite .toml file")
    r.add_argument("--policies", nargs="+", metavar="NAME",
                   help="baselines to run (default: the suite's); fifo, the reference, is always added")
    r.add_argument("--agent", action="append", default=[], metavar="PATH",
                   help="a saved agent folder (agent.json + model.zip) or a shipped agent's name "
                        "(e.g. philly-clairvoyant) to run as a policy; repeatable")
    r.add_argument("--out", type=Path, help="output folder (default: leaderboard-results/<suite>/)")
    r.add_argument("--jobs", type=int, metavar="N", help="jobs per window (default: the suite's)")
    r.add_argument("--workers", type=int, metavar="N",
                   help="parallel processes of the local backend (default: min(2, CPUs))")
    r.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where cells run: processes of this machine, or Ray tasks (pip install -e \".[ray]\"); "
                        "the cache and the outputs are written here either way")
    r.add_argument("--address", metavar="ADDR",
                   help="with --backend ray: the Ray cluster to join (e.g. auto or HOST:6379); "
                        "default: start a local Ray instance")
    r.add_argument("--cpus-per-cell", type=float, default=1.0, metavar="N",
                   help="with --backend ray: CPUs Ray reserves for each cell (default: 1)")
    r.add_argument("--fresh", action="store_true", help="recompute every cell, ignoring the cache")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    from leaderboard.reproduce import DEFAULT_OUT, SCALES, row_names

    p = sub.add_parser("reproduce", help="rerun every paper's headline claim in its own setting; write "
                                         "REPRODUCTION.md and reproduction.csv")
    p.add_argument("--scale", choices=SCALES, default="full",
                   help="small: tiny workloads, seconds per row (a smoke run); full: the settings of the claims' "
                        "tests, about 20 minutes of CPU in all (default: full)")
    p.add_argument("--rows", nargs="+", metavar="NAME", choices=row_names(),
                   help=f"rows to run (default: all): {', '.join(row_names())}")
    p.add_argument("--agent", metavar="DIR",
                   help="a saved agent (the agent/ folder of a train.py run, or a shipped agent's name) for the "
                        "learned-agent row; "
                        "without it that row says it was not run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"output folder for REPRODUCTION.md and reproduction.csv (default: {DEFAULT_OUT}/)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="rows run in parallel processes (default: min(2, CPUs))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _reproduce(args: argparse.Namespace) -> int:
    from leaderboard import reproduce
    from leaderboard.runner import default_workers

    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.agent is not None:
        from agents.pretrained import resolve_agent
        try:
            folder = resolve_agent(args.agent)
        except FileNotFoundError as e:
            print(f"error: --agent {e}", file=sys.stderr)
            return 2
        if not (folder / "agent.json").is_file():
            print(f"error: --agent {args.agent}: not an agent folder (expected agent.json and model.zip; "
                  "give the agent/ folder of a train.py run)", file=sys.stderr)
            return 2
        args.agent = str(folder)
    signal.signal(signal.SIGTERM, _interrupt)
    workers = default_workers() if args.workers is None else args.workers
    try:
        results = reproduce.reproduce(args.scale, rows=args.rows, agent=args.agent, workers=workers,
                                      progress=not args.no_progress, suite_out=args.out / "suites")
    except KeyboardInterrupt:
        print("\ninterrupted: nothing written (the blox row's suite cells are cached under "
              f"{args.out / 'suites'})", file=sys.stderr)
        return 130
    files = reproduce.write(results, args.scale, args.out, agent=args.agent)
    for res in results:
        if res.error:
            print(f"{res.name}: {res.error}")
        for m in res.measures:
            print(f"{res.name}: {m.label}: {reproduce.fmt_ours(m)} (paper: {reproduce.fmt_paper(m)}): {m.verdict}")
    print(f"report: {files[0]}")
    return 0


def _list() -> int:
    import baselines

    for name in suite_names():
        try:
            s = load_suite(name)
        except SuiteError as exc:
            print(f"{name}: INVALID: {exc}")
            continue
        windows = len(s.windows())
        policies = len(dict.fromkeys(["fifo", *s.policies]))
        cells = policies * windows * len(s.loads) * len(s.seeds)
        missing = s.missing_files()
        status = "ready" if not missing else f"missing {len(missing)} file(s), e.g. {missing[0][0]}"
        spec = s.cluster
        loads = ", ".join("native" if x is None else f"{x:g}" for x in s.loads)
        print(f"{name}: {s.trace['kind']} on {spec.name} ({spec.num_gpus} GPUs); {windows} window(s) x loads "
              f"[{loads}] x {len(s.seeds)} seed(s) x {policies} policies = {cells} cells; "
              f"time: {s.expected_label()}; data: {status}")
        if s.description:
            print("    " + textwrap.shorten(s.description, 200, placeholder=" ..."))
    print(f"(baselines: {', '.join(baselines.names())})")
    print("Times are for a full uncached run of every cell with --workers 2; start with `run quick`.")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _show_cache_warnings() -> None:
    """Print a damaged-cache warning as one ``warning: ...`` line (not Python's file:line form)."""
    from leaderboard.runner import CellCacheWarning

    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file=None,
             line: str | None = None) -> None:
        if issubclass(category, CellCacheWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "reproduce":
        return _reproduce(args)
    from leaderboard.runner import run

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 2:
        print("error: --jobs must be >= 2", file=sys.stderr)
        return 2
    if args.backend != "ray" and (args.address is not None or args.cpus_per_cell != 1.0):
        print("error: --address and --cpus-per-cell apply to --backend ray", file=sys.stderr)
        return 2
    if args.backend == "ray" and args.workers is not None:
        print("error: --workers applies to the local backend; with --backend ray the cluster's CPUs and "
              "--cpus-per-cell decide how many cells run at once", file=sys.stderr)
        return 2
    if not args.cpus_per_cell > 0:
        print(f"error: --cpus-per-cell must be > 0, got {args.cpus_per_cell:g}", file=sys.stderr)
        return 2
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            print('error: --backend ray needs Ray: pip install -e ".[ray]"', file=sys.stderr)
            return 2
    from leaderboard.ray_backend import RayBackendError
    signal.signal(signal.SIGTERM, _interrupt)
    _show_cache_warnings()
    if suite.expected_minutes is not None and args.policies is None and args.jobs is None and not args.agent:
        print(f"suite {suite.name}: expected time {suite.expected_label()}; finished cells are cached, "
              "so an interrupted run resumes", file=sys.stderr)
    try:
        summary = run(suite, policies=args.policies, agents=args.agent, out=args.out, num_jobs=args.jobs,
                      workers=args.workers, progress=not args.no_progress, fresh=args.fresh,
                      backend=args.backend, address=args.address, cpus_per_cell=args.cpus_per_cell)
    except MissingDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SuiteError, RayBackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cells are cached; run the same command again to resume "
              f"(suite {suite.name!r})", file=sys.stderr)
        return 130
    print(f"suite {summary.suite}: {summary.cells} cells, {summary.cached} cached, {summary.computed} computed, "
          f"{len(summary.failed)} failed" + (f", on {len(summary.nodes)} Ray node(s): "
                                               f"{', '.join(str(n) for n in sorted(summary.nodes.values(), reverse=True))} "
                                               f"cells" if summary.nodes else ""))
    for c, err in summary.failed:
        print(f"  failed: {c.labels()}: {err}", file=sys.stderr)
    print(f"table: {summary.out / 'leaderboard.md'}")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
