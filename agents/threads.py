"""Torch CPU threads for the small policy networks of this project.

Torch starts with one intra-op thread per core. For networks of a few thousand weights run on
batches of a few hundred rows, the threads cost more to synchronise than they save, and on a
loaded machine they make training many times slower. So the entry points of :mod:`agents`
(:func:`~agents.make_model`, :func:`~agents.load_agent`, :class:`~agents.AgentPolicy`) call
:func:`ensure_torch_threads` when they are used (never at import), which sets torch to

- ``CLUSTERGYM_TORCH_THREADS`` threads when that variable is set;
- otherwise leaves torch alone when ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set (torch
  already follows them), or when the program changed torch's thread count after importing
  :mod:`agents` or through :func:`set_torch_threads`;
- otherwise 1 thread.

It acts once per process: whatever the program sets afterwards stays.
"""

from __future__ import annotations

import os

import torch

#: environment variable naming the torch threads the agents use
ENV_VAR = "CLUSTERGYM_TORCH_THREADS"

#: torch's thread count when this module was imported (read only, to notice a program's own choice)
_INITIAL = torch.get_num_threads()
_state = {"chosen": False}


def set_torch_threads(threads: int) -> None:
    """Use ``threads`` torch threads from now on (the agents' entry points then leave them)."""
    if threads < 1:
        raise ValueError(f"torch threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    _state["chosen"] = True


def ensure_torch_threads() -> int:
    """Apply the rule of this module once per process; return the threads torch now uses."""
    if not _state["chosen"]:
        _state["chosen"] = True
        wanted = os.environ.get(ENV_VAR, "").strip()
        if wanted:
            try:
                threads = int(wanted)
            except ValueError:
                raise ValueError(f"{ENV_VAR}={wanted!r}: expected a whole number of threads") from None
            set_torch_threads(threads)
        elif not (os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")) and \
                torch.get_num_threads() == _INITIAL:
            torch.set_num_threads(1)
    return torch.get_num_threads()
