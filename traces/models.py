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
    return {"speed": speed, "scaling": scaling, "locality": locality}


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
