"""Model types and their throughput on each GPU type, GPU count and placement.

The figures are a compact summary of Gavel's measured throughputs (Narayanan et al., OSDI'20;
``simulation_throughputs.json`` of stanford-futuredata/gavel, MIT licence), reduced per model
family (geometric mean over the measured batch sizes):

- ``SPEED[model][gpu_type]``: single-GPU throughput relative to a V100 (the reference type).
- ``SCALING[model]``: exponent ``a`` of the fitted scaling curve ``speed(n) = n ** a`` (least
  squares in log space over 2, 4 and 8 GPUs on K80, P100 and V100). Models that Gavel measured
  on one GPU only have ``a = 0``: extra GPUs do not speed them up, and synthetic or trace jobs of
  these models are only ever single-GPU.
- ``LOCALITY[model]``: throughput of a gang spread over more servers than it needs, relative
  to the consolidated gang (Gavel's ``*_unconsolidated`` entries, capped at 1).

GPU types Gavel did not measure take the figures of the closest measured type: ``t4`` uses
P100's (similar FP32 throughput), ``misc`` (older cards in Alibaba PAI) uses K80's, ``v100m32``
uses V100's. :func:`derive_from_gavel` recomputes the table from
the measurement file, and a test checks that the figures here match it.
"""

from __future__ import annotations

import ast
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

REFERENCE_GPU = "v100"
MEASURED_GPUS = ("k80", "p100", "v100")
#: GPU type -> the measured type whose figures it uses.
GPU_ALIASES = {"k80": "k80", "p100": "p100", "v100": "v100", "t4": "p100", "misc": "k80", "v100m32": "v100"}
GPU_TYPES = tuple(GPU_ALIASES)

SPEED: dict[str, dict[str, float]] = {
    "resnet18": {"k80": 0.155, "p100": 0.902, "v100": 1.0},
    "resnet50": {"k80": 0.158, "p100": 0.659, "v100": 1.0},
    "transformer": {"k80": 0.280, "p100": 0.741, "v100": 1.0},
    "lm": {"k80": 0.250, "p100": 0.840, "v100": 1.0},
    "recommendation": {"k80": 1.308, "p100": 2.168, "v100": 1.0},
    "a3c": {"k80": 0.479, "p100": 0.792, "v100": 1.0},
    "cyclegan": {"k80": 0.114, "p100": 0.543, "v100": 1.0},
}
SCALING: dict[str, float] = {
    "resnet18": 0.925,
    "resnet50": 0.788,
    "transformer": 0.723,
    "lm": 0.585,
    "recommendation": 0.0,
    "a3c": 0.0,
    "cyclegan": 0.0,
}
LOCALITY: dict[str, float] = {
    "resnet18": 0.682,
    "resnet50": 0.958,
    "transformer": 0.697,
    "lm": 0.460,
    "recommendation": 1.0,
    "a3c": 1.0,
    "cyclegan": 1.0,
}
#: Throughput of a job of the first model while it shares its GPUs with a job of the second
#: (space sharing), relative to its throughput alone: Gavel's pairwise measurements (geometric
#: mean over batch sizes and GPU types of ``own shared / own alone``).
SHARING: dict[str, dict[str, float]] = {
    "resnet18": {"resnet18": 0.623, "resnet50": 0.521, "transformer": 0.615, "lm": 0.753, "recommendation": 0.807, "a3c": 0.602, "cyclegan": 0.579},
    "resnet50": {"resnet18": 0.612, "resnet50": 0.461, "transformer": 0.529, "lm": 0.614, "recommendation": 0.659, "a3c": 0.491, "cyclegan": 0.507},
    "transformer": {"resnet18": 0.525, "resnet50": 0.368, "transformer": 0.585, "lm": 0.669, "recommendation": 0.709, "a3c": 0.545, "cyclegan": 0.542},
    "lm": {"resnet18": 0.492, "resnet50": 0.391, "transformer": 0.516, "lm": 0.522, "recommendation": 0.714, "a3c": 0.494, "cyclegan": 0.468},
    "recommendation": {"resnet18": 0.599, "resnet50": 0.343, "transformer": 0.613, "lm": 0.653, "recommendation": 0.440, "a3c": 0.508, "cyclegan": 0.395},
    "a3c": {"resnet18": 0.626, "resnet50": 0.404, "transformer": 0.653, "lm": 0.551, "recommendation": 0.604, "a3c": 0.519, "cyclegan": 0.522},
    "cyclegan": {"resnet18": 0.506, "resnet50": 0.358, "transformer": 0.591, "lm": 0.644, "recommendation": 0.688, "a3c": 0.592, "cyclegan": 0.539},
}
#: CPU sensitivity per model (Synergy, Mohan et al., OSDI'22, Table 1 and its per-model profiles):
#: ``(knee, ideal, speedup)``: CPUs per GPU below which the job starves (its speed falls linearly
#: to 0 at 0 CPUs), CPUs per GPU at which it reaches its best speed, and that speed relative to its
#: speed at the knee. Image models follow Synergy's ResNet-18 (9 CPUs, 2.4x) and ResNet-50 (4
#: CPUs, 1.15x); language models (Transformer, LM) Synergy's GNMT/Transformer/LSTM (1 CPU, no
#: gain). Recommendation, A3C and CycleGAN were not profiled by Synergy: recommendation is taken
#: as mildly sensitive (embedding lookups), A3C as strongly (CPU environment simulators) and
#: CycleGAN as Synergy's MobileNet-like image pipeline (6 CPUs, 1.55x).
CPU_PROFILE: dict[str, tuple[float, float, float]] = {
    "resnet18": (3.0, 9.0, 2.4),
    "resnet50": (3.0, 4.0, 1.15),
    "transformer": (1.0, 1.0, 1.0),
    "lm": (1.0, 1.0, 1.0),
    "recommendation": (2.0, 4.0, 1.2),
    "a3c": (3.0, 12.0, 2.9),
    "cyclegan": (3.0, 6.0, 1.55),
}
#: Host memory per GPU (GB) a model needs to keep its input pipeline cached (Synergy's ideal
#: memory demands: 62.5 GB for image models, 20.8 GB for language models); with less, its speed
#: falls in proportion (page-cache misses).
MEM_PER_GPU: dict[str, float] = {
    "resnet18": 62.5, "resnet50": 62.5, "transformer": 20.8, "lm": 20.8, "recommendation": 62.5,
    "a3c": 20.8, "cyclegan": 62.5,
}
MODELS: tuple[str, ...] = tuple(SPEED)
MULTI_GPU_MODELS: tuple[str, ...] = tuple(m for m in MODELS if SCALING[m] > 0)

_GAVEL_FAMILIES = {
    "ResNet-18": "resnet18",
    "ResNet-50": "resnet50",
    "Transformer": "transformer",
    "LM": "lm",
    "Recommendation": "recommendation",
    "A3C": "a3c",
    "CycleGAN": "cyclegan",
}


def normalize_gpu_type(name: str, *, source: str = "GPU type") -> str:
    """Canonical lower-case GPU type name; ``ValueError`` for a type with no throughput figures."""
    key = str(name).strip().lower()
    if key not in GPU_ALIASES:
        raise ValueError(f"{source}: unknown GPU type {name!r}; known types are {sorted(GPU_ALIASES)}")
    return key


def model_index(name: str) -> int:
    """Position of ``name`` in :data:`MODELS`; ``ValueError`` for an unknown model."""
    try:
        return MODELS.index(str(name).strip().lower())
    except ValueError:
        raise ValueError(f"unknown model {name!r}; known models are {list(MODELS)}") from None


def speed_matrix(gpu_types: tuple[str, ...] | list[str]) -> np.ndarray:
    """``(num_models, num_types)`` single-GPU throughput relative to the reference type."""
    return np.array(
        [[SPEED[m][GPU_ALIASES[normalize_gpu_type(g)]] for g in gpu_types] for m in MODELS],
        dtype=np.float64,
    )


def sharing_matrix() -> np.ndarray:
    """``(M, M)``: :data:`SHARING` in :data:`MODELS` order (row: the job, column: its partner)."""
    return np.array([[SHARING[a][b] for b in MODELS] for a in MODELS])


def comm_fraction_vector() -> np.ndarray:
    """``(M,)`` fraction of a spread gang's iteration spent on inter-node communication,
    ``1 - LOCALITY``: what spreading costs a job is its time on the network."""
    return 1.0 - locality_vector()


def cpu_factor(model: np.ndarray, cpus_per_gpu: np.ndarray, mem_per_gpu: np.ndarray) -> np.ndarray:
    """Speed of jobs of ``model`` given ``cpus_per_gpu`` and ``mem_per_gpu`` (GB), relative to
    their speed at their CPU knee with enough memory (:data:`CPU_PROFILE`, :data:`MEM_PER_GPU`)."""
    prof = np.array([CPU_PROFILE[m] for m in MODELS])[model]
    knee, ideal, top = prof[..., 0], prof[..., 1], prof[..., 2]
    c = np.asarray(cpus_per_gpu, dtype=np.float64)
    above = np.where(ideal > knee, 1.0 + (top - 1.0) * np.clip((c - knee) / np.maximum(ideal - knee, 1e-9), 0, 1), 1.0)
    f = np.where(c >= knee, above, c / knee)
    need = np.array([MEM_PER_GPU[m] for m in MODELS])[model]
    return f * np.clip(np.asarray(mem_per_gpu, dtype=np.float64) / need, 0.0, 1.0)


def scaling_vector() -> np.ndarray:
    """``(num_models,)`` scaling exponents, in :data:`MODELS` order."""
    return np.array([SCALING[m] for m in MODELS], dtype=np.float64)


def locality_vector() -> np.ndarray:
    """``(num_models,)`` spread-gang throughput factors, in :data:`MODELS` order."""
    return np.array([LOCALITY[m] for m in MODELS], dtype=np.float64)


def assign_models(num_gpus: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a model type per job (uniform over the models that can run at its GPU count).

    Multi-GPU jobs draw only from :data:`MULTI_GPU_MODELS`. Returns an object array of names.
    """
    num_gpus = np.asarray(num_gpus)
    single = np.array(MODELS, dtype=object)
    multi = np.array(MULTI_GPU_MODELS, dtype=object)
    draw_single = single[rng.integers(0, len(single), size=len(num_gpus))]
    draw_multi = multi[rng.integers(0, len(multi), size=len(num_gpus))]
    return np.where(num_gpus > 1, draw_multi, draw_single)


def derive_from_gavel(path: str | Path) -> dict[str, dict]:
    """Recompute ``SPEED``, ``SCALING`` and ``LOCALITY`` from Gavel's throughput file.

    Non-positive measurements (three entries in the published file) are skipped.
    """
    data = json.loads(Path(path).read_text())
    rel: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    scale: dict[str, list[tuple[int, float]]] = defaultdict(list)
    loc: dict[str, list[float]] = defaultdict(list)
    for g in MEASURED_GPUS:
        for key, val in data[g].items():
            name, n = ast.literal_eval(key)
            fam = _GAVEL_FAMILIES[name.split(" (")[0]]
            tp = val["null"]
            if tp <= 0:
                continue
            if n == 1:
                rel[fam][g].append(math.log(tp / data[REFERENCE_GPU][key]["null"]))
                continue
            one = data[g][str((name, 1))]["null"]
            if one <= 0:
                continue
            scale[fam].append((n, math.log(tp / one)))
            spread = data[f"{g}_unconsolidated"].get(key)
            if spread and spread["null"] > 0:
                loc[fam].append(math.log(spread["null"] / tp))
    speed = {f: {g: math.exp(float(np.mean(v))) for g, v in r.items()} for f, r in rel.items()}
    scaling = {}
    for f in speed:
        if scale[f]:
            x = np.log([n for n, _ in scale[f]])
            y = np.array([s for _, s in scale[f]])
            scaling[f] = float((x * y).sum() / (x * x).sum())
        else:
            scaling[f] = 0.0
    locality = {f: min(1.0, math.exp(float(np.mean(loc[f])))) if loc[f] else 1.0 for f in speed}
    share: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for g in MEASURED_GPUS:
        for key, val in data[g].items():
            fam = _GAVEL_FAMILIES[ast.literal_eval(key)[0].split(" (")[0]]
            alone = val["null"]
            for other, pair in val.items():
                if other == "null" or alone <= 0 or pair[0] <= 0:
                    continue
                partner = _GAVEL_FAMILIES[ast.literal_eval(other)[0].split(" (")[0]]
                share[fam][partner].append(math.log(pair[0] / alone))
    sharing = {f: {p: math.exp(float(np.mean(v))) for p, v in r.items()} for f, r in share.items()}
    return {"speed": speed, "scaling": scaling, "locality": locality, "sharing": sharing}


def with_models(trace, seed: int = 0):
    """Return ``trace`` with every empty ``model`` filled by a seeded draw (:func:`assign_models`).

    Known model names are normalised to lower case; an unknown name raises ``ValueError``
    naming the row. The draw depends only on ``seed`` and the jobs' GPU counts, so the same
    trace and seed always get the same models.
    """
    out = trace.copy()
    names = out["model"].astype(str).str.strip().str.lower().to_numpy(dtype=object)
    empty = names == ""
    for i in np.flatnonzero(~empty):
        if names[i] not in SPEED:
            raise ValueError(f"row {i}, column 'model': unknown model {names[i]!r}; known: {list(MODELS)}")
    drawn = assign_models(out["num_gpus"].to_numpy(), np.random.default_rng(seed))
    out["model"] = np.where(empty, drawn, names)
    return out
