"""Simulator speed: forward + backward of the default ansatz, bandwidth, PennyLane side by side."""
import argparse


def register_args(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
