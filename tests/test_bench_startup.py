"""The start-up bench's reading of ``python -X importtime`` (no timing is tested)."""

from __future__ import annotations

import pytest

from qtrl.bench.startup import imports

SAMPLE = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:     65376 |    1449100 |     torch
import time:      2065 |     367386 |               sympy
import time:         1 |    1700000 |   torch._dynamo
import time:      1203 |     241752 |         numba
import time:         9 |          9 |         numba.core
some other stderr line
"""


def test_named_imports_are_read_in_seconds():
    got = imports(SAMPLE)
    assert got == pytest.approx({"torch": 1.4491, "torch._dynamo": 1.7, "numba": 0.241752})


def test_nothing_named_gives_nothing():
    assert imports("import time: 1 | 2 | json\nnot an import line") == {}
