"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import torch

from qtrl.quantum import adjoint


@pytest.fixture(autouse=True)
def _one_thread():
    """The suite shares few cores: one torch thread avoids oversubscription stalls."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(params=["stored", "recomputed"])
def adjoint_mode(request, monkeypatch) -> str:
    """Run a test with earlier states kept from the forward pass (what small
    circuits do) and with them recomputed by inverse gates (large circuits)."""
    if request.param == "recomputed":
        monkeypatch.setattr(adjoint, "STORE_STATES_BYTES", 0)
    return request.param
