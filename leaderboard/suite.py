"""Suites: what a leaderboard run evaluates, defined as data (one TOML file per suite).

A suite expands into **cells**, one per policy x trace window x load x seed on one cluster. A
cell is fully described by a plain dict (:attr:`Cell.definition`): the window and the SHA-256 of its
job table (the simulation's input), the load, the cluster's node table, the policy and its knobs
(or the agent's file hashes), the seed, the simulator settings, the package version and a
SHA-256 of the simulator's, policies' and loaders' source (:func:`code_digest`). Its hash is the
cell's cache key, so changing anything that can change a result gives a new cell.

Suite file format (``leaderboard/suites/<name>.toml``; every key but ``name``, ``[cluster]``
and ``[trace]`` is optional)::

    name = "philly"                       # the suite's name (the file's stem by default)
    description = "..."                   # one paragraph, printed in the table
    expected_minutes = 1.0                # wall time of a full run, 2 workers on 2 cores (shown by `list`)
    expected_basis = "measured"           # or "estimated" (cells x measured seconds per sampled cell)
    seeds = [0, 1]                        # default [0]
    loads = [0.8, 1.2]                    # offered-load targets; omitted: the windows' own
    policies = "all"                      # or a list of baseline names; fifo is always added
    restart_overhead = 30.0               # seconds (envs.config.SimConfig, as the keys below)
    elastic_fraction = 0.0                # SimConfig
    round_length = 300.0                  # overrides every policy's own (default: their own)
    placer = "consolidate"                # SimConfig
    goodput = true                        # Pollux workloads as goodput jobs (envs.goodput)
    application_restart = "uniform"       # or "sia": Sia's restart delay per application
    resources = false                     # CPU/memory model (SimConfig)
    network = false                       # link contention model (SimConfig)
    dynamic_fraction = 0.0                # jobs that adapt their batch size (SimConfig)

    [cluster]                             # a preset ...
    preset = "small"
    # ... or node groups (traces.clusters.from_counts):
    # name = "pai-scaled"
    # groups = [["v100", 2, 8, 96, 512], ...]   # gpu_type, nodes, GPUs per node, CPUs, GB

    [trace]
    kind = "synthetic"                    # "synthetic" | "file" | "pollux_workloads"
    num_jobs = 300                        # jobs per window (synthetic, file)
    # file: path under the shared data folder, its format, windows, and where it comes from
    # path = "traces/philly/pollux_philly.csv.gz"; format = "pollux_philly"
    # starts_days = [14, 35, 56, 77]      # window starts (days after the first submit)
    # max_job_gpus = 64                   # drop jobs asking for more (default: largest pool)
    # pollux_workloads: path = "reference/pollux"; workloads = [1, 2, ..., 8]
    source = "where the data comes from (URL)"

    [knobs.optimus]                       # constructor knobs per policy (baselines.get)
    interval = 60.0

    [knobs.tiresias]                      # composition knobs too (baselines.compose):
    placement = "spread"                  # the scheduler with a placement policy ...
    admission = "load"                    # ... and an admission policy in front
    admission_knobs = { factor = 1.2 }

    [variants.las_spread]                 # a named variant of a policy, listed in `policies`
    policy = "las"                        # beside its base: the base's knobs and composition
    placement = "spread"                  # knobs; compared with the base in the same run

Seeds: for ``synthetic`` the seed draws the trace (``traces.synthetic(seed=...)``) and is the
simulation seed; for the other kinds it is the simulation seed (model draw for jobs without a
model, elastic draw).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

import traces
from traces import clusters
from traces.clusters import ClusterSpec

if TYPE_CHECKING:
    from envs.config import SimConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parent / "suites"
#: Bumped when the cell file layout or the meaning of a cell definition changes.
CACHE_FORMAT = 1
KINDS = ("synthetic", "file", "pollux_workloads")
_TOP_KEYS = {"name", "description", "seeds", "loads", "policies", "restart_overhead", "elastic_fraction",
             "round_length", "placer", "cluster", "trace", "knobs", "goodput", "application_restart",
             "resources", "network", "dynamic_fraction", "expected_minutes", "expected_basis", "variants"}
#: How a suite's ``expected_minutes`` was obtained.
EXPECTED_BASES = ("measured", "estimated")


class SuiteError(ValueError):
    """A suite file that cannot be used (names the file and the key)."""


class MissingDataError(FileNotFoundError):
    """Files a suite needs are absent; ``str()`` names each and where it comes from."""

    def __init__(self, suite: str, missing: list[tuple[Path, str]]) -> None:
        self.suite = suite
        self.missing = missing
        lines = [f"suite {suite!r} needs data that is not on this machine:"]
        for path, source in missing:
            lines.append(f"  - {path}")
            lines.append(f"    comes from: {source}")
        root = shared_root()
        if os.environ.get("CLUSTERGYM_SHARED"):
            lines.append(f"Searched {root} (CLUSTERGYM_SHARED); point CLUSTERGYM_SHARED at the folder that "
                         "holds the data; see the Traces section of README.md.")
        else:
            lines.append(f"Searched {root} (../shared beside the checkout); put the data there or name its "
                         "folder with CLUSTERGYM_SHARED; see the Traces section of README.md.")
        super().__init__("\n".join(lines))


def package_version() -> str:
    """The installed ``clustergym`` version (part of every cache key)."""
    try:
        from importlib.metadata import version

        return version("clustergym")
    except Exception:  # not installed (a bare checkout): no version to key on
        return "0+unknown"


def shared_root() -> Path:
    """Where the shared data folder is expected (whether or not it exists)."""
    env = os.environ.get("CLUSTERGYM_SHARED")
    if env:
        return Path(env)
    return Path(traces.__file__).resolve().parent.parent.parent / "shared"


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (memoised on path, size and modification time)."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


#: Packages whose source decides a cell's result (hashed into every cache key).
CODE_PACKAGES = ("envs", "baselines", "traces", "agents")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the Python sources of :data:`CODE_PACKAGES` (found without importing them):
    editing the simulator, a policy or a loader gives new cache keys even at the same version."""
    import importlib.util

    h = hashlib.sha256()
    for name in CODE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            h.update(f"{name}:absent".encode())
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for f in sorted(root.rglob("*.py")):
            h.update(f"{name}/{f.relative_to(root).as_posix()}".encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def jobs_digest(trace: pd.DataFrame) -> str:
    """SHA-256 of a job table's content (the simulation's input, whatever produced it)."""
    cols = [c for c in traces.COLUMNS if c in trace.columns]
    blob = trace[cols].to_csv(index=False, float_format="%.17g", lineterminator="\n")
    return hashlib.sha256(blob.encode()).hexdigest()


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple | list | np.ndarray):
        return [_jsonable(v) for v in x]
    raise TypeError(f"cannot put {x!r} ({type(x).__name__}) in a cell definition")


def cell_key(definition: dict) -> str:
    """The cache key of a cell: SHA-256 (first 24 hex digits) of its canonical JSON definition."""
    blob = json.dumps(definition, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# ------------------------------------------------------------------------------------ policies
@dataclass(frozen=True)
class PolicySpec:
    """A policy of a run: a registered baseline with knobs, or a saved agent folder."""

    name: str
    knobs: dict = field(default_factory=dict)
    agent: str | None = None  # absolute path of the agent folder
    base: str | None = None  # for a suite's variant: the registered baseline it configures

    def build(self):
        if self.agent is not None:
            from agents import AgentPolicy

            return AgentPolicy(self.agent)
        import baselines

        return baselines.get(self.base or self.name, **self.knobs)

    @property
    def needs_durations(self) -> bool:
        if self.agent is not None:
            meta = json.loads((Path(self.agent) / "agent.json").read_text())
            return bool(meta.get("env", {}).get("known_durations", False))
        return bool(self.build().needs_durations)  # knobs may decide it (a host policy, an objective)

    def identity(self) -> dict:
        """What enters the cache key: the name and knobs, or the agent's file hashes."""
        if self.agent is not None:
            folder = Path(self.agent)
            return {"agent": self.name, "agent.json": file_digest(folder / "agent.json"),
                    "model.zip": file_digest(folder / "model.zip")}
        policy = self.build()
        knobs = policy.knobs() if hasattr(policy, "knobs") else dict(self.knobs)
        out = {"baseline": self.base or self.name, "knobs": json.loads(json.dumps(knobs, default=_jsonable))}
        if self.base is not None:
            out["variant"] = self.name
        return out


def agent_spec(path: str | Path) -> PolicySpec:
    """A :class:`PolicySpec` for the agent folder ``path``, or a shipped agent's name
    (:func:`agents.pretrained_names`); a clear error if it is neither."""
    from agents.pretrained import resolve_agent
    try:
        folder = resolve_agent(path).resolve()
    except FileNotFoundError as e:
        raise SuiteError(str(e)) from None
    if not (folder / "agent.json").is_file() or not (folder / "model.zip").is_file():
        raise SuiteError(f"{path}: not an agent folder (expected agent.json and model.zip)")
    return PolicySpec(f"agent:{folder.name}", agent=str(folder))


# ------------------------------------------------------------------------------------ cells
@dataclass(frozen=True)
class Cell:
    """One evaluation: a policy on one window at one load, one seed, on the suite's cluster."""

    index: int  # position in the suite's deterministic order
    window: str
    window_index: int
    load: float | None
    seed: int
    policy: str
    oracle: bool
    definition: dict  # everything that determines the result (hashed: :attr:`key`)
    runtime: dict  # how to get at the data on this machine (absolute paths; not hashed)

    @property
    def key(self) -> str:
        return cell_key(self.definition)

    @property
    def load_label(self) -> str:
        return "native" if self.load is None else f"{self.load:g}"

    def labels(self) -> dict:
        return {"window": self.window, "load": self.load_label, "seed": self.seed, "policy": self.policy}


@dataclass
class Suite:
    """A parsed suite file (see the module docstring)."""

    name: str
    description: str
    path: Path
    cluster_def: dict
    trace: dict
    seeds: list[int]
    loads: list[float | None]
    policies: list[str]
    knobs: dict[str, dict]
    sim: dict
    expected_minutes: float | None = None  # wall time of a full run with 2 workers on 2 cores
    expected_basis: str = "measured"  # or "estimated"
    variants: dict[str, dict] = field(default_factory=dict)  # label -> {"policy": base, **knobs}

    def expected_label(self) -> str:
        """The expected wall time of a full uncached run, e.g. "about 1 min (measured, 2 workers on 2 cores)"."""
        if self.expected_minutes is None:
            return "not stated"
        m = self.expected_minutes
        amount = f"{m:.0f} min" if m < 90 else f"{m / 60:.1f} h"
        return f"about {amount} ({self.expected_basis}, 2 workers on 2 cores)"

    # ---------------------------------------------------------------- cluster
    @property
    def cluster(self) -> ClusterSpec:
        return build_cluster(self.cluster_def)

    # ---------------------------------------------------------------- data files
    def required_files(self) -> list[tuple[Path, str]]:
        """``(absolute path, where it comes from)`` of every file the suite reads."""
        root = shared_root()
        kind, source = self.trace["kind"], self.trace.get("source", "")
        if kind == "file":
            return [(root / self.trace["path"], source)]
        if kind == "pollux_workloads":
            base = root / self.trace["path"]
            out = [(base / "workloads" / f"workload-{k}.csv", source) for k in self.trace["workloads"]]
            from traces.pollux import APPLICATION_MODELS

            for app in APPLICATION_MODELS:
                out += [(base / "traces" / app / "placements.csv", source),
                        (base / "traces" / app / "scalability.csv", source)]
            return out
        return []

    def missing_files(self) -> list[tuple[Path, str]]:
        return [(p, s) for p, s in self.required_files() if not p.is_file()]

    def check_data(self) -> None:
        """``MissingDataError`` naming every missing file and where it comes from."""
        missing = self.missing_files()
        if missing:
            raise MissingDataError(self.name, missing)

    # ---------------------------------------------------------------- windows
    def windows(self, num_jobs: int | None = None) -> list[tuple[str, dict]]:
        """``(label, window definition)`` per window, in suite order (``num_jobs`` overrides)."""
        t = self.trace
        kind = t["kind"]
        if kind == "synthetic":
            return [("synthetic", {"kind": "synthetic", "num_jobs": int(num_jobs or t["num_jobs"])})]
        if kind == "file":
            out = []
            for d in t["starts_days"]:
                out.append((f"day{d:g}", {"kind": "file", "path": t["path"], "format": t.get("format"),
                                           "start_days": float(d), "num_jobs": int(num_jobs or t["num_jobs"]),
                                           "max_job_gpus": t.get("max_job_gpus")}))
            return out
        out = []
        for k in t["workloads"]:
            out.append((f"workload-{k}", {"kind": "pollux_workloads", "path": t["path"], "workload": int(k),
                                          "num_jobs": None if num_jobs is None else int(num_jobs),
                                          "gpu_type": t.get("gpu_type", "t4")}))
        return out

    def _data_paths(self, win: dict) -> dict:
        """Where a window's data is on this machine (not part of the cache key)."""
        root = shared_root()
        if win["kind"] == "file":
            return {"path": str(root / win["path"])}
        if win["kind"] == "pollux_workloads":
            base = root / win["path"]
            return {"root": str(base), "workload": str(base / "workloads" / f"workload-{win['workload']}.csv")}
        return {}

    # ---------------------------------------------------------------- cells
    def cells(self, policies: list[PolicySpec], num_jobs: int | None = None) -> list[Cell]:
        """Every cell, in a deterministic order (load, window, seed, policy as given).

        Builds every window's job table here (cheap next to simulating it): its content hash,
        not the files or code that produced it, goes into the cell's key, and the table travels
        to the worker with the cell.
        """
        self.check_data()
        spec = self.cluster
        cluster_identity = {"name": spec.name, "nodes": spec.nodes.astype(object).values.tolist()}
        identities = {p.name: p.identity() for p in policies}
        oracle = {p.name: p.needs_durations for p in policies}
        windows = self.windows(num_jobs)
        paths = [self._data_paths(w) for _, w in windows]
        version, code = package_version(), code_digest()
        out = []
        for load in self.loads:
            for wi, (label, win) in enumerate(windows):
                trace = None  # one table per window and load; synthetic ones also per seed
                for seed in self.seeds:
                    if trace is None or win["kind"] == "synthetic":
                        trace = build_trace(win, paths[wi], load, int(seed), spec)
                        digest = jobs_digest(trace)
                    for p in policies:
                        definition = {
                            "cache_format": CACHE_FORMAT, "clustergym": version, "code": code,
                            "trace": {**win, "jobs_sha256": digest, "num_jobs_built": len(trace)},
                            "load": load, "cluster": cluster_identity,
                            "policy": identities[p.name], "seed": int(seed),
                            "sim": {**self.sim, "known_durations": oracle[p.name]},
                        }
                        runtime = {"policy": p, "trace": trace}
                        out.append(Cell(len(out), label, wi, load, int(seed), p.name, oracle[p.name],
                                        definition, runtime))
        return out

    def policy_specs(self, names: list[str] | None = None, agents: list[str | Path] = ()) -> list[PolicySpec]:
        """The run's policies: ``names`` (default: the suite's), fifo first if absent, then agents."""
        import baselines

        chosen = list(self.policies if names is None else names)
        for n in chosen:
            if n not in baselines.REGISTRY and n not in self.variants:
                raise SuiteError(f"unknown policy {n!r}; baselines are {baselines.names()}"
                                 + (f", this suite's variants {sorted(self.variants)}" if self.variants else ""))
        if "fifo" not in chosen:
            chosen.insert(0, "fifo")
        chosen = list(dict.fromkeys(chosen))
        specs = []
        for n in chosen:
            if n in self.variants:
                knobs = dict(self.variants[n])
                base = knobs.pop("policy")
                specs.append(PolicySpec(n, knobs, base=base))
            else:
                specs.append(PolicySpec(n, dict(self.knobs.get(n, {}))))
        for a in agents:
            specs.append(agent_spec(a))
        names_seen = [s.name for s in specs]
        if len(set(names_seen)) != len(names_seen):
            raise SuiteError(f"two policies share a name: {names_seen}")
        return specs


# ------------------------------------------------------------------------------------ parsing
def build_cluster(d: dict) -> ClusterSpec:
    if "preset" in d:
        return clusters.get(d["preset"])
    groups = [tuple(g) for g in d["groups"]]
    return clusters.from_counts(d.get("name", "custom"), groups)


def _fail(path: Path, msg: str):
    raise SuiteError(f"{path}: {msg}")


def parse_suite(path: str | Path) -> Suite:
    """Read and check a suite file (``SuiteError`` naming the file and key on any problem)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        _fail(path, f"unknown key(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    name = str(raw.get("name", path.stem))
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        _fail(path, f"seeds: expected a list of integers >= 0, got {seeds!r}")
    loads = raw.get("loads")
    if loads is None:
        loads = [None]
    elif not isinstance(loads, list) or not loads or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in loads):
        _fail(path, f"loads: expected a list of numbers > 0, got {loads!r}")
    loads = [None if x is None else float(x) for x in loads]
    if len(set(loads)) != len(loads) or len(set(seeds)) != len(seeds):
        _fail(path, "loads and seeds must not repeat")

    cluster = raw.get("cluster")
    if not isinstance(cluster, dict) or ("preset" in cluster) == ("groups" in cluster):
        _fail(path, "[cluster] needs exactly one of preset = NAME or groups = [[type, nodes, gpus, cpus, mem_gb], ...]")
    try:
        spec = build_cluster(cluster)
    except (ValueError, TypeError) as exc:
        _fail(path, f"[cluster]: {exc}")

    trace = raw.get("trace")
    if not isinstance(trace, dict) or trace.get("kind") not in KINDS:
        _fail(path, f"[trace] needs kind = one of {list(KINDS)}")
    trace = dict(trace)
    kind = trace["kind"]
    if kind in ("synthetic", "file"):
        nj = trace.get("num_jobs")
        if not isinstance(nj, int) or nj < 2:
            _fail(path, f"[trace] num_jobs: expected an integer >= 2, got {nj!r}")
    if kind == "synthetic" and loads == [None]:
        _fail(path, "a synthetic suite needs loads = [...] (the generator's offered load)")
    if kind == "file":
        for key in ("path", "source", "starts_days"):
            if key not in trace:
                _fail(path, f"[trace] kind 'file' needs {key}")
        if not all(isinstance(d, int | float) and d >= 0 for d in trace["starts_days"]):
            _fail(path, "[trace] starts_days: expected numbers >= 0")
        if trace.get("format") is not None and trace["format"] not in traces.FORMATS:
            _fail(path, f"[trace] format: expected one of {list(traces.FORMATS)}")
    if kind == "pollux_workloads":
        for key in ("path", "source", "workloads"):
            if key not in trace:
                _fail(path, f"[trace] kind 'pollux_workloads' needs {key}")
        if not all(isinstance(k, int) and k >= 1 for k in trace["workloads"]):
            _fail(path, "[trace] workloads: expected workload numbers (integers >= 1)")

    import baselines

    policies = raw.get("policies", "all")
    if policies == "all":
        policies = baselines.names()
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        _fail(path, f"policies: expected \"all\" or a list of names, got {policies!r}")
    variants = raw.get("variants", {})
    if not isinstance(variants, dict):
        _fail(path, "[variants] must be a table of tables ([variants.<label>] with policy = NAME)")
    for label, v in variants.items():
        if label in baselines.REGISTRY:
            _fail(path, f"[variants.{label}]: {label!r} is a baseline's name; give the variant a label of its own")
        if not isinstance(v, dict) or v.get("policy") not in baselines.REGISTRY:
            _fail(path, f"[variants.{label}]: needs policy = one of {baselines.names()}")
        kn = {k: x for k, x in v.items() if k != "policy"}
        try:
            baselines.get(v["policy"], **kn)
        except (TypeError, ValueError) as exc:
            _fail(path, f"[variants.{label}]: {exc}")
    bad = [p for p in policies if p not in baselines.REGISTRY and p not in variants]
    if bad:
        _fail(path, f"policies: unknown {bad}; baselines are {baselines.names()}"
              + (f", this suite's variants {sorted(variants)}" if variants else ""))
    knobs = raw.get("knobs", {})
    if not isinstance(knobs, dict):
        _fail(path, "[knobs] must be a table of tables ([knobs.<policy>])")
    for pname, kn in knobs.items():
        if pname not in baselines.REGISTRY or not isinstance(kn, dict):
            _fail(path, f"[knobs.{pname}]: not a baseline, or not a table")
        try:
            baselines.get(pname, **kn)
        except (TypeError, ValueError) as exc:
            _fail(path, f"[knobs.{pname}]: {exc}")

    from envs.config import SimConfig

    d = SimConfig()  # the simulator's defaults
    sim = {"restart_overhead": float(raw.get("restart_overhead", d.restart_overhead)),
           "elastic_fraction": float(raw.get("elastic_fraction", d.elastic_fraction)),
           "round_length": None if raw.get("round_length") is None else float(raw["round_length"]),
           "placer": str(raw.get("placer", d.placer)),
           "goodput": bool(raw.get("goodput", True)),
           "application_restart": str(raw.get("application_restart", "uniform")),
           "resources": bool(raw.get("resources", d.resources)),
           "network": bool(raw.get("network", d.network)),
           "dynamic_fraction": float(raw.get("dynamic_fraction", d.dynamic_fraction))}
    if sim["application_restart"] not in ("uniform", "sia"):
        _fail(path, f"application_restart must be 'uniform' or 'sia', got {sim['application_restart']!r}")
    try:
        sim_config(sim)
    except ValueError as exc:
        _fail(path, str(exc))
    expected = raw.get("expected_minutes")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int | float) or expected <= 0):
        _fail(path, f"expected_minutes: expected a number > 0, got {expected!r}")
    basis = raw.get("expected_basis", "measured")
    if basis not in EXPECTED_BASES:
        _fail(path, f"expected_basis: expected one of {list(EXPECTED_BASES)}, got {basis!r}")
    del spec
    return Suite(name=name, description=str(raw.get("description", "")).strip(), path=path,
                 cluster_def=dict(cluster), trace=trace, seeds=[int(s) for s in seeds], loads=loads,
                 policies=list(policies), knobs={k: dict(v) for k, v in knobs.items()}, sim=sim,
                 expected_minutes=None if expected is None else float(expected), expected_basis=basis,
                 variants={k: dict(v) for k, v in variants.items()})


def sim_config(sim: dict) -> SimConfig:
    """The :class:`envs.config.SimConfig` of a suite's (or a cell's) ``sim`` settings: ``goodput``
    true lets Pollux workloads run as goodput jobs, ``application_restart = "sia"`` charges Sia's
    restart delay per application. ``known_durations`` (per policy) is not a simulator setting."""
    from envs.config import SimConfig
    from envs.goodput import SIA_RESTART

    return SimConfig(
        restart_overhead=sim["restart_overhead"], round_length=sim["round_length"], placer=sim["placer"],
        resources=sim.get("resources", False), network=sim.get("network", False),
        elastic_fraction=sim["elastic_fraction"], dynamic_fraction=sim.get("dynamic_fraction", 0.0),
        goodput=None if sim.get("goodput", True) else False,
        restart=SIA_RESTART if sim.get("application_restart") == "sia" else None)


def suite_names() -> list[str]:
    """The bundled suites (``leaderboard/suites/*.toml``), sorted."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A bundled suite by name, or a suite file by path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise SuiteError(f"{p}: no such suite file")
        return parse_suite(p)
    bundled = SUITES_DIR / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise SuiteError(f"unknown suite {str(name_or_path)!r}; bundled suites are {suite_names()} "
                         "(or give the path of a .toml file)")
    return parse_suite(bundled)


# ------------------------------------------------------------------------------------ traces
@lru_cache(maxsize=2)
def _load_file(path: str, fmt: str | None, size: int, mtime_ns: int) -> pd.DataFrame:
    return traces.load_trace(path, format=fmt)


def build_trace(win: dict, paths: dict, load: float | None, seed: int, spec: ClusterSpec) -> pd.DataFrame:
    """The job table of one window at one load (and, for synthetic traces, one seed)."""
    kind = win["kind"]
    if kind == "synthetic":
        return traces.synthetic(win["num_jobs"], load, spec, seed=seed)
    if kind == "file":
        st = os.stat(paths["path"])
        full = _load_file(paths["path"], win.get("format"), st.st_size, st.st_mtime_ns)
        cap = win.get("max_job_gpus") or max(spec.gpus_per_type().values())
        kept = full[full["num_gpus"] <= cap].reset_index(drop=True)
        kept.attrs = dict(full.attrs)
        return traces.window(kept, win["start_days"] * 86400.0, num_jobs=win["num_jobs"], load=load, cluster=spec)
    from traces.pollux import load_workload

    w = load_workload(paths["workload"], root=paths["root"], gpu_type=win["gpu_type"])
    attrs = dict(w.attrs)
    if win.get("num_jobs"):
        w = w.iloc[: win["num_jobs"]].reset_index(drop=True)
    if load is not None:
        w = traces.window(w, 0.0, num_jobs=len(w), load=load, cluster=spec)
    w.attrs = attrs  # each job's application and batch size (goodput jobs)
    return w


def describe_cluster(spec: ClusterSpec) -> str:
    parts = ", ".join(f"{g} {n}" for g, n in spec.gpus_per_type().items())
    shapes = spec.nodes.groupby(["gpu_type", "num_gpus"], sort=False).size()
    nodes = " + ".join(f"{c} x {n} {g}" for (g, n), c in shapes.items())
    return f"{spec.name}: {spec.num_gpus} GPUs ({parts}); nodes {nodes}"


__all__ = ["CACHE_FORMAT", "Cell", "MissingDataError", "PolicySpec", "Suite", "SuiteError", "agent_spec",
           "build_trace", "cell_key", "code_digest", "describe_cluster", "jobs_digest", "load_suite", "package_version", "parse_suite",
           "shared_root", "suite_names"]
