"""Dist-QTRL: many agents (QPUs) train one shared model through torch.distributed.

Every update all agents hold identical shared parameters, each collects its
own episodes and computes a local gradient, the gradients are averaged by one
flat all-reduce, and every agent applies the same optimizer step (docs/DISTRIBUTED.md).
"""

from .attempt import exit_soon_after_sigterm
from .context import AgentContext, init_local, init_torchrun, shutdown, under_torchrun
from .launch import AgentFailure, check_agent_count, launch_local
from .sync import (
                   DesyncError,
                   allreduce_gradients,
                   broadcast_parameters,
                   check_agreement,
                   gather_objects,
                   gather_over_agents,
                   parameter_checksum,
                   sum_over_agents,
)

__all__ = [
                   "AgentContext",
                   "AgentFailure",
                   "DesyncError",
                   "allreduce_gradients",
                   "broadcast_parameters",
                   "check_agent_count",
                   "check_agreement",
                   "exit_soon_after_sigterm",
                   "gather_objects",
                   "gather_over_agents",
                   "init_local",
                   "init_torchrun",
                   "launch_local",
                   "parameter_checksum",
                   "shutdown",
                   "sum_over_agents",
                   "under_torchrun",
]
