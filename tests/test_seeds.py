"""The seed-stream registry: every purpose its own stream, whatever the keys."""

from __future__ import annotations

import itertools

import numpy as np

from qtrl.run.seeds import Stream, generator, integer_seed, seed_sequence


def test_every_purpose_has_its_own_tag() -> None:
    tags = [int(s) for s in Stream]
    assert len(tags) == len(set(tags))


def test_no_two_purposes_share_a_stream() -> None:
    """The first draws of every (purpose, key) for small agents, updates and
    copies are all distinct: shot sampling and env resets (once both tag 2) no
    longer coincide when a copy index equals the update number."""
    keys = [(), *((a,) for a in range(4)), *itertools.product(range(4), range(4))]
    seen: dict[int, tuple] = {}
    for stream in Stream:
        for key in keys:
            value = integer_seed(7, stream, *key)
            assert value not in seen, (stream, key, seen.get(value))
            seen[value] = (stream, key)


def test_streams_are_pure_functions_of_seed_and_key() -> None:
    a = generator(3, Stream.ACTIONS, 1, 5).random(4)
    b = generator(3, Stream.ACTIONS, 1, 5).random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generator(4, Stream.ACTIONS, 1, 5).random(4))
    assert seed_sequence(3, Stream.SHOTS, 2).spawn_key == (int(Stream.SHOTS), 2)
