"""Reinforcement learning: environments, roll-outs and losses."""
