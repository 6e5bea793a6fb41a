"""PPO (Schulman et al. 2017) and A2C on an actor-critic (:class:`~qtrl.rl.actor_critic.ActorCritic`),
as CleanRL and Stable-Baselines3 implement them.

Per update, from a roll-out of ``T`` steps of ``N`` copies (:class:`~qtrl.rl.steps.StepBatch`):

1. with the weights that played it: ``log π_old(a_t|s_t)``, ``V(s_t)``, and the
   bootstrap values ``V(s'_t)`` of the observation after the roll-out and of
   the last observations of episodes cut by a time limit;
2. GAE(λ) advantages and value targets ``R_t = A_t + V(s_t)``
   (:func:`~qtrl.rl.returns.gae`: a terminated episode's next value is 0, a
   truncated one's is bootstrapped); PPO normalises the advantages over the roll-out;
   with ``--norm-value`` the targets' running statistics take the roll-out's
   targets in, and the critic learns them standardised;
3. ``epochs`` passes over the roll-out in ``minibatches`` shuffled minibatches;
   each minibatch step generates the policy's and the critic's weights anew
   (the parameters changed at the previous step), evaluates :func:`ppo_loss`,
   backpropagates into the circuits and mapping models (or the classical
   networks), all-reduces the gradient between agents (``average``), clips its
   global norm and takes the Adam step.

A2C is the case of one epoch of one minibatch without clipping: the ratio is 1
at the only step, so the clipped surrogate's gradient is the plain policy
gradient ``−A_t ∇ log π(a_t|s_t)``; A2C does not normalise advantages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..rl.actor_critic import ActorCritic, gaussian_log_prob
from ..rl.policy import Actor, ColumnsActor, GaussianActor, make_actor
from ..rl.returns import RewardScaler, gae
from ..rl.steps import StepBatch
from .base import make_optimizer

__all__ = ["A2C", "PPO", "explained_variance", "ppo_loss"]


def ppo_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, entropy: Tensor,
             values: Tensor, old_values: Tensor, returns: Tensor, *, clip: float | None,
             vf_coef: float, ent_coef: float, clip_vloss: bool = False
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """The PPO objective of a minibatch of ``B`` samples (all arguments ``(B,)``).

    ``ρ = exp(log π − log π_old)``;
    policy loss ``−mean(min(ρ A, clip(ρ, 1 ± ε) A))`` (``clip=None``: ``−mean(ρ A)``);
    value loss ``mean((V − R)²)`` (``clip_vloss``: the larger of that and the
    loss of ``V_old + clip(V − V_old, ± ε)``), as Stable-Baselines3 weighs it;
    ``loss = policy − ent_coef · mean(H) + vf_coef · value``.
    Returns the loss and its parts (detached), with the approximate KL
    ``mean(ρ − 1 − log ρ)`` and the fraction of clipped ratios.
    """
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    surrogate = ratio * advantages
    if clip is not None:
        surrogate = torch.min(surrogate, ratio.clamp(1 - clip, 1 + clip) * advantages)
    policy_loss = -surrogate.mean()
    value_loss = (values - returns).square()
    if clip_vloss and clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        value_loss = torch.max(value_loss, (clipped - returns).square())
    value_loss = value_loss.mean()
    mean_entropy = entropy.mean()
    loss = policy_loss - ent_coef * mean_entropy + vf_coef * value_loss
    with torch.no_grad():
        stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": mean_entropy,
                 "approx_kl": ((ratio - 1) - log_ratio).mean(),
                 "clip_frac": (((ratio - 1).abs() > clip).float().mean() if clip is not None
                               else torch.zeros(()))}
    return loss, stats


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """``1 − Var(target − predicted) / Var(target)`` (nan when the target is constant)."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - predicted)) / var


class PPO:
    """Clipped-surrogate PPO on an :class:`ActorCritic` (see the module docstring).

    Args:
        model: the actor-critic.
        config: ``gamma``, ``gae_lambda``, ``update_epochs``, ``num_minibatches``,
            ``clip_coef``, ``clip_vloss``, ``vf_coef``, ``entropy``, ``max_grad_norm``
            (none: 0.5), ``lr``, ``mapping_lr``, ``norm_reward`` (scale rewards by
            :class:`~qtrl.rl.returns.RewardScaler`), ``vector_envs``.
    """

    collects = "steps"
    stat_names = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac",
                  "explained_variance")

    def __init__(self, model: ActorCritic, config: Any) -> None:
        self.model = model
        self.optimizer = make_optimizer(model, config, eps=1e-5)   # CleanRL's and SB3's
        self.gamma, self.lam = float(config.gamma), float(config.gae_lambda)
        self.epochs, self.minibatches = config.update_epochs, config.num_minibatches
        self.clip: float | None = float(config.clip_coef)
        self.clip_vloss = bool(config.clip_vloss)
        self.normalise_advantages = True
        self.vf_coef, self.ent_coef = float(config.vf_coef), float(config.entropy)
        self.max_grad_norm = (config.max_grad_norm if config.max_grad_norm is not None
                              else 0.5)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.scale_rewards = (RewardScaler(config.vector_envs, self.gamma)
                              if config.norm_reward else None)
        self._played: dict[str, Tensor] | None = None   # the last actor()'s weights
        # Sums the value statistics over the agents (sync Dist-QTRL sets it) so
        # that every agent's value normaliser stays the same.
        self.sum_over_agents: Callable[[Tensor], Tensor] | None = None

    # ---- the roll-out's actor -----------------------------------------------------------

    @torch.no_grad()
    def actor(self) -> Actor:
        """The policy with its current weights, generated once for the roll-out
        (kept: the update's old log-probabilities are taken with them)."""
        self._played = self.model.policy.generate()
        actor = make_actor(self.model.target, self._played)
        if self.model.views is not None:
            actor = ColumnsActor(actor, self.model.views[0])
        if self.model.log_std is not None:
            return GaussianActor(actor, self.model.log_std.exp().numpy())
        return actor

    # ---- the update -----------------------------------------------------------------------

    def update(self, batch: StepBatch, average: Callable[[], None] | None = None,
               rng: np.random.Generator | None = None) -> dict[str, float]:
        """Advantages of ``batch``, then the epochs of minibatch steps (each
        all-reduced by ``average`` when given); ``rng`` shuffles the minibatches."""
        rng = rng if rng is not None else np.random.default_rng()
        samples, explained = self.samples(batch)
        size = len(samples[0])
        totals: dict[str, float] = {}
        count = 0
        order = np.arange(size)
        for _ in range(self.epochs):
            if self.minibatches > 1:
                order = rng.permutation(size)
            for idx in np.array_split(order, self.minibatches):
                mb = torch.from_numpy(idx)
                stats = self.minibatch_step(*(x[mb] for x in samples), average=average)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        out = {key: value / count for key, value in totals.items()}
        out["explained_variance"] = explained
        return out

    def samples(self, batch: StepBatch) -> tuple[tuple[Tensor, ...], float]:
        """The roll-out as ``B = T·N`` training samples: ``obs``, ``actions``,
        ``log π_old``, advantages (normalised for PPO), ``V_old`` and value targets;
        and how much of the targets' variance ``V_old`` explains.

        Under ``--norm-value`` ``V_old`` is the critic's own output (standardised by
        the statistics it was trained on: the centre of ``--clip-vloss``), and the
        call merges the targets into the statistics (an all-reduce under sync
        Dist-QTRL) before it standardises them by the merged ones."""
        steps, copies = batch.rewards.shape
        size = steps * copies
        obs = torch.from_numpy(batch.obs.reshape(size, -1))
        actions = torch.from_numpy(batch.actions.reshape(size, *batch.actions.shape[2:]))
        old_log_prob, old_values, next_values = self._old(batch, obs, actions)
        dones = batch.terminated | batch.truncated_steps
        if self.scale_rewards is not None and len(self.scale_rewards.running) != copies:
            # a multi-agent task's rows: vector_envs copies x its players
            self.scale_rewards = RewardScaler(copies, self.gamma)
        rewards = (batch.rewards if self.scale_rewards is None
                   else self.scale_rewards(batch.rewards, dones))
        advantages = gae(rewards, old_values.reshape(steps, copies), next_values,
                         batch.terminated, dones, self.gamma, self.lam).reshape(size)
        returns = advantages + old_values.numpy().astype(np.float64)
        if batch.alive is not None:   # a multi-agent task: idle rows (players gone) are no samples
            keep = np.flatnonzero(batch.alive)
            advantages, returns = advantages[keep], returns[keep]
            index = torch.from_numpy(keep)
            obs, actions, old_log_prob, old_values = (x[index] for x in (obs, actions,
                                                                         old_log_prob, old_values))
            size = len(keep)
        explained = explained_variance(old_values.numpy().astype(np.float64), returns)
        if self.normalise_advantages and size > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        dtype = old_values.dtype
        targets = torch.from_numpy(returns).to(dtype)
        norm = self.model.value_norm
        if norm is not None:   # the critic learns standardised targets
            old_values = norm.standardize(old_values)   # its raw output, before the merge
            norm.add(returns)
            norm.commit(self.sum_over_agents)
            targets = norm.standardize(targets)
        return (obs, actions, old_log_prob, torch.from_numpy(advantages).to(dtype), old_values,
                targets), explained

    def minibatch_step(self, obs: Tensor, actions: Tensor, old_log_prob: Tensor,
                       advantages: Tensor, old_values: Tensor, returns: Tensor,
                       average: Callable[[], None] | None = None) -> dict[str, float]:
        """One optimizer step on a minibatch of ``B`` samples: weights generated
        anew, :func:`ppo_loss`, backward, ``average``, clip, Adam step.
        ``obs (B, obs_dim)``, ``actions (B,)`` or ``(B, action_dim)``, the rest ``(B,)``."""
        loss, stats = self.loss(obs, actions, old_log_prob, advantages, old_values, returns)
        self.optimizer.zero_grad()
        loss.backward()
        if average is not None:
            average()
        return {"loss": loss.item(), **{k: v.item() for k, v in stats.items()},
                "grad_norm": self.step()}

    def step(self) -> float:
        """Clip the gradient's global norm to ``max_grad_norm``, take Adam's step;
        returns the norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True)
        self.optimizer.step()
        return float(norm)

    def loss(self, obs: Tensor, actions: Tensor, old_log_prob: Tensor, advantages: Tensor,
             old_values: Tensor, returns: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`ppo_loss` of a minibatch with freshly generated weights."""
        log_prob, entropy = self._policy(obs, actions, self.model.policy.generate())
        # The critic's raw output, not ActorCritic.values(): under --norm-value
        # the targets are standardised, and so must the predictions be.
        values = self.model.critic(self.model.critic_obs(obs),
                                   weights=self.model.critic.generate()).squeeze(-1)
        return ppo_loss(log_prob, old_log_prob, advantages, entropy, values, old_values,
                        returns, clip=self.clip, vf_coef=self.vf_coef, ent_coef=self.ent_coef,
                        clip_vloss=self.clip_vloss)

    # ---- helpers --------------------------------------------------------------------------

    def _policy(self, obs: Tensor, actions: Tensor,
                weights: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``log π(a|s)`` and the entropy of ``π(·|s)``, each ``(B,)``."""
        out = self.model.policy(self.model.actor_obs(obs).to(next(iter(weights.values())).dtype),
                                weights=weights)
        log_std = self.model.log_std
        if log_std is None:
            log_probs = torch.log_softmax(out, dim=-1)
            taken = log_probs.gather(1, actions.long()[:, None]).squeeze(1)
            return taken, -(log_probs.exp() * log_probs).sum(-1)
        taken = gaussian_log_prob(out, log_std, actions.to(out.dtype))
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum().expand(len(out))
        return taken, entropy

    @torch.no_grad()
    def _old(self, batch: StepBatch, obs: Tensor,
             actions: Tensor) -> tuple[Tensor, Tensor, np.ndarray]:
        """``log π_old(a|s) (T·N,)``, ``V(s) (T·N,)`` and ``V(s') (T, N)`` with the
        weights that played the roll-out (the parameters have not moved since);
        values in returns (:meth:`ActorCritic.values`)."""
        played, self._played = self._played, None
        weights = played if played is not None else self.model.policy.generate()
        log_prob, _ = self._policy(obs, actions, weights)
        steps, copies = batch.rewards.shape
        tails = torch.from_numpy(np.concatenate([batch.next_obs, batch.final_obs]))
        both = self.model.values(torch.cat([obs, tails]))
        values, boot = both[:len(obs)], both[len(obs):].numpy().astype(np.float64)
        next_values = np.empty((steps, copies))
        next_values[:-1] = values.numpy().reshape(steps, copies)[1:]
        next_values[-1] = boot[:copies]
        if len(batch.final_at):
            t, i = batch.final_at.T
            next_values[t, i] = boot[copies:]
        return log_prob, values, next_values


class A2C(PPO):
    """A2C: one unclipped step per roll-out on the whole batch, advantages as
    estimated (see the module docstring). Its update splits into
    :meth:`gradient` and :meth:`step` for the async loop (A3C: workers push
    gradients, the learner steps)."""

    def __init__(self, model: ActorCritic, config: Any) -> None:
        super().__init__(model, config)
        self.epochs, self.minibatches, self.clip = 1, 1, None
        self.clip_vloss = False
        self.normalise_advantages = False

    def gradient(self, batch: StepBatch) -> dict[str, float]:
        """The loss of the roll-out, backward into every ``p.grad`` (no step)."""
        samples, explained = self.samples(batch)
        loss, stats = self.loss(*samples)
        self.optimizer.zero_grad()
        loss.backward()
        return {"loss": loss.item(), **{k: v.item() for k, v in stats.items()},
                "explained_variance": explained}
