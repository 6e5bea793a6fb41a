"""Where a synchronous update's time goes, agent by agent.

Every agent measures its own update: generating the weights, the roll-out,
the learning step (loss, backward, optimizer step) and the gradient
all-reduce(s), in wall-clock seconds, plus the CPU seconds its process (all
threads: Numba's and gloo's too) spent computing (everything but the
all-reduces) and inside the all-reduces. Agent 0 gathers them and splits each
agent's all-reduce time into

* **communicate**: the all-reduce of the agent that arrived last, which waits
  for no one: the transfer itself, the same for every agent (wall clock, and
  its CPU seconds);
* **wait**: the rest of that agent's all-reduce, spent waiting for the slowest
  agent to arrive.

The **critical path** of the update is the slowest agent's compute plus the
transfer: the wall-clock time of the update if every agent had a core of its
own. Both are taken as CPU seconds, which do not grow when agents share cores
(wall-clock seconds do: a ring all-reduce of N processes on fewer cores waits
for each to be scheduled in turn); on a machine with a core per agent the
transfer's wall clock adds the wire's latency to its CPU seconds. An agent's compute runs from the end of the
previous update's bookkeeping gather to its next one, so agent 0's recording
and checkpoints count as its compute. ``progress.csv`` and TensorBoard get
every agent's split under ``time/agent<r>/…`` and the update's under ``time/…``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["AgentTimes", "UpdateSplit", "split_update"]


class AgentTimes(NamedTuple):
    """One agent's seconds in one update (wall clock unless named ``cpu``)."""

    generate: float      # the policy weights, generated once
    rollout: float       # the episodes or steps played
    learn: float         # loss, backward, optimizer step: the all-reduce excluded
    allreduce: float     # inside the gradient all-reduce(s): waiting plus transfer
    compute_cpu: float   # this agent's process CPU seconds, the all-reduce's excepted
    allreduce_cpu: float  # this agent's process CPU seconds inside the all-reduce(s)


class UpdateSplit(NamedTuple):
    """One update split over its ``N`` agents (agent 0's view)."""

    agents: tuple[AgentTimes, ...]   # (N,) in rank order
    communicate: float               # the transfer: the last-arriving agent's all-reduce
    communicate_cpu: float           # its CPU seconds
    waits: tuple[float, ...]         # (N,) each agent's all-reduce minus the transfer
    slowest_agent: int               # the agent with the most compute
    critical_path: float             # the slowest agent's compute + the transfer, CPU seconds

    @property
    def critical_path_wall(self) -> float:
        """The slowest agent's compute plus the transfer's wall time: with the
        wire's latency, and with any waiting to be scheduled where agents share cores."""
        return self.agents[self.slowest_agent].compute_cpu + self.communicate

    def columns(self) -> dict[str, float]:
        """The ``time/`` scalars of this update (progress.csv and TensorBoard)."""
        out = {"time/communicate_s": self.communicate,
               "time/communicate_cpu_s": self.communicate_cpu,
               "time/wait_s": self.waits[0],
               "time/compute_max_s": self.agents[self.slowest_agent].compute_cpu,
               "time/slowest_agent": float(self.slowest_agent),
               "time/critical_path_s": self.critical_path,
               "time/critical_path_wall_s": self.critical_path_wall}
        for rank, (times, wait) in enumerate(zip(self.agents, self.waits, strict=True)):
            prefix = f"time/agent{rank}/"
            out[prefix + "generate_s"] = times.generate
            out[prefix + "rollout_s"] = times.rollout
            out[prefix + "learn_s"] = times.learn
            out[prefix + "communicate_s"] = self.communicate
            out[prefix + "wait_s"] = wait
            out[prefix + "compute_cpu_s"] = times.compute_cpu
        return out


def split_update(agents: Sequence[AgentTimes]) -> UpdateSplit:
    """Split one update's measured times (one :class:`AgentTimes` per agent, rank
    order) into transfer, waits and the critical path."""
    agents = tuple(AgentTimes(*a) for a in agents)
    if not agents:
        raise ValueError("split_update needs at least one agent's times")
    last = min(range(len(agents)), key=lambda r: agents[r].allreduce)   # arrived last
    communicate = agents[last].allreduce
    waits = tuple(a.allreduce - communicate for a in agents)
    slowest = max(range(len(agents)), key=lambda r: agents[r].compute_cpu)
    return UpdateSplit(agents, communicate, agents[last].allreduce_cpu, waits, slowest,
                       agents[slowest].compute_cpu + agents[last].allreduce_cpu)
