"""The Gym adapter, :func:`envs.adapter.act`, under its historical import path."""

from envs.adapter import GymView, act, dense_rescale, engine_of

_dense_rescale = dense_rescale

__all__ = ["GymView", "act", "engine_of"]
