"""Where the public trace and reference data live on this machine.

The data is not shipped with the package. ``CLUSTERGYM_SHARED`` names its folder; otherwise
``../shared`` beside the source checkout is used. Functions return ``None`` when the data is
absent so that callers (tests, benchmarks) can skip with a clear reason.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """The shared data folder, or ``None`` if it does not exist."""
    env = os.environ.get("CLUSTERGYM_SHARED")
    path = Path(env) if env else _CHECKOUT.parent / "shared"
    return path if path.is_dir() else None


def shared_file(*parts: str) -> Path | None:
    """A file under the shared folder, or ``None`` if the folder or the file is missing."""
    root = shared_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None


PHILLY_POLLUX_CSV = ("traces", "philly", "pollux_philly.csv.gz")
PHILLY_MACHINES = ("traces", "philly", "cluster_machine_list")
PAI_MACHINES = ("traces", "alibaba", "pai_machine_spec.csv")
GAVEL_THROUGHPUTS = ("reference", "gavel", "simulation_throughputs.json")
POLLUX_REFERENCE = ("reference", "pollux")
