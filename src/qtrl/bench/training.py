"""Training speed: Quantum-Train vs classical vs the reference's per-step formulation."""
import argparse


def register_args(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
