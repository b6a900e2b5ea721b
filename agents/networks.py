"""Policy networks for GpuCluster-v0 made for its observation: one shared per-job encoder.

:class:`SlotPolicy` (for sb3-contrib's ``MaskablePPO``) reads the flat observation as ``K`` slots
of ``F`` job features plus cluster features. Every slot goes through the same encoder, so the
policy is permutation-equivariant: a job's logit does not depend on where it sits in the queue.
A masked mean over the present slots, joined with the encoded cluster features, is the context
that feeds the "advance" logit and the value head; each slot's logit comes from its own encoding
next to that context.
"""

from __future__ import annotations

import itertools

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


class SlotExtractor(nn.Module):
    """Maps observations to per-action logits (actor) and a context vector (critic).

    Exposes ``latent_dim_pi`` (= K + 1, the logits themselves) and ``latent_dim_vf``, as
    stable-baselines3's ``MlpExtractor`` does.
    """

    def __init__(self, slots: int, slot_features: int, context_features: int, hidden: int = 64,
                 advance: bool = True) -> None:
        super().__init__()
        self.with_advance = advance
        self.K, self.F, self.C = slots, slot_features, context_features
        self.encoder = nn.Sequential(_mlp([slot_features, hidden, hidden]), nn.ReLU())
        self.context = nn.Sequential(_mlp([context_features + hidden, hidden, hidden]), nn.ReLU())
        self.score = _mlp([2 * hidden, hidden, 1])
        self.advance = _mlp([hidden, hidden, 1])
        self.latent_dim_pi = slots + 1 if advance else slots
        self.latent_dim_vf = hidden

    def _encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slots = obs[:, : self.K * self.F].reshape(-1, self.K, self.F)
        cluster = obs[:, self.K * self.F :]
        h = self.encoder(slots)  # (B, K, H)
        present = slots[..., :1]  # feature 0: the slot holds a job
        pooled = (h * present).sum(dim=1) / present.sum(dim=1).clamp(min=1.0)
        ctx = self.context(torch.cat([cluster, pooled], dim=1))
        return h, ctx

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, ctx = self._encode(obs)
        return self._logits(h, ctx), ctx

    def _logits(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        per_slot = self.score(torch.cat([h, ctx[:, None, :].expand_as(h)], dim=2)).squeeze(2)
        if not self.with_advance:
            # scores live in the action space [-1, 1]: squash them so that deterministic actions
            # keep their order instead of tying at the clipping bound
            return torch.tanh(per_slot)
        return torch.cat([per_slot, self.advance(ctx)], dim=1)

    def forward_actor(self, obs: torch.Tensor) -> torch.Tensor:
        h, ctx = self._encode(obs)
        return self._logits(h, ctx)

    def forward_critic(self, obs: torch.Tensor) -> torch.Tensor:
        return self._encode(obs)[1]


class _SlotHeads:
    """Builds a :class:`SlotExtractor` in place of SB3's MLP extractor, and no action layer after
    it (a layer mixing the slots would break permutation equivariance)."""

    _advance = True

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Space, lr_schedule,
                 *, slots: int, slot_features: int, hidden: int = 64, **kwargs) -> None:
        self._slot_shape = (slots, slot_features, hidden)
        kwargs.setdefault("ortho_init", False)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        K, F, H = self._slot_shape
        self.mlp_extractor = SlotExtractor(K, F, self.features_dim - K * F, H, advance=self._advance)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


class SlotPolicy(_SlotHeads, MaskableActorCriticPolicy):
    """``MaskablePPO`` policy for ``action_mode="pick"``: one logit per visible slot plus
    "advance", from :class:`SlotExtractor`.

    ``policy_kwargs``: ``slots`` (K) and ``slot_features`` (F) of the env (see
    :func:`agents.policy_kwargs_for`), ``hidden`` (width, default 64).
    """


class SlotScorePolicy(_SlotHeads, ActorCriticPolicy):
    """PPO policy for ``action_mode="priority"``: the mean of each visible slot's score comes
    from the shared per-job encoder (Gaussian exploration around it). ``policy_kwargs`` as
    :class:`SlotPolicy`.
    """

    _advance = False
