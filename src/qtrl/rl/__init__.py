"""Reinforcement learning: environments, roll-outs, returns, models and actors."""
