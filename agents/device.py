"""Where the network runs: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

The simulator always runs on the CPU; only the policy network moves. The default is ``cpu``:
the default slot network is small (a few thousand parameters per slot), and for it a step on
the CPU costs less than the transfer of the batch to a GPU and back. Large networks (attention
over hundreds of queued jobs) are faster on a GPU. Saved agents hold their weights as device-free
tensors, so an agent trained on a GPU loads on a CPU-only machine and the reverse.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str = "cpu", log: Callable[[str], None] | None = print) -> torch.device:
    """The torch device for ``spec`` (one of :data:`DEVICES`). ``auto`` picks CUDA when it is
    available and otherwise the CPU, saying which through ``log``; asking for CUDA on a machine
    without it (or for a GPU index it does not have) raises ``ValueError``."""
    spec = str(spec).strip().lower()
    if not _PATTERN.match(spec):
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {spec!r}")
    if spec == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
            if log is not None:
                log(f"device auto: using {device} ({torch.cuda.get_device_name(device)})")
        else:
            device = torch.device("cpu")
            if log is not None:
                log("device auto: CUDA is not available on this machine, using the CPU")
        return device
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
