"""Generation cost: forward + backward time of Quantum-Train weight generation vs k."""
import argparse


def register_args(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
