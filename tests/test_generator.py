"""QuantumTrain: parameter counts of the presets, weight order, chunking, targets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qtrl.generator import ACTIVATIONS, QuantumTrain, qubits_for
from qtrl.presets import PRESETS, build_policy
from qtrl.quantum.memory import StatevectorTooLarge, check_statevector_fits, statevector_bytes

# (preset, obs_dim, n_actions) -> k, n, L, QNN, mapping, total (the reference presets)
PRESET_NUMBERS = {
    "cartpole-paper": ((4, 2), (898, 10, 5, 300, 351, 651)),
    "minigrid-paper": ((147, 3), (4835, 13, 13, 1014, 1515, 2529)),
}


def _preset_qt(name: str, **kwargs) -> QuantumTrain:
    preset = PRESETS[name]
    (obs_dim, n_actions), _ = PRESET_NUMBERS[name]
    policy = build_policy(obs_dim, preset.hidden, n_actions)
    return QuantumTrain(policy, preset.layers, preset.mapping_hidden, gamma=preset.qt_gamma,
                        beta=preset.qt_beta, alpha=preset.qt_alpha, **kwargs)


@pytest.mark.parametrize("name", sorted(PRESET_NUMBERS))
def test_preset_parameter_counts(name: str) -> None:
    qt = _preset_qt(name)
    k, n, layers, qnn, mapping, total = PRESET_NUMBERS[name][1]
    counts = qt.parameter_counts()
    assert (counts.target_weights, counts.qubits, counts.layers) == (k, n, layers)
    assert (counts.qnn, counts.mapping, counts.total) == (qnn, mapping, total)
    assert counts.chunks == 1
    assert sum(p.numel() for p in qt.parameters()) == total  # only these are trained
    assert counts.compression == pytest.approx(k / total)
    assert qt.generate_flat().shape == (k,)


def test_preset_environment_sizes() -> None:
    from qtrl.rl.env import env_dims

    for name, ((obs_dim, n_actions), _) in PRESET_NUMBERS.items():
        preset = PRESETS[name]
        assert env_dims(preset.env_id, preset.n_actions) == (obs_dim, n_actions)


def test_generated_dict_follows_target_parameters() -> None:
    target = build_policy(4, (128,), 2)
    qt = QuantumTrain(target, 2)
    weights = qt.generate()
    expected = [(name, p.shape) for name, p in target.named_parameters()]
    assert [(name, w.shape) for name, w in weights.items()] == expected
    flat = qt.generate_flat()
    torch.testing.assert_close(torch.cat([w.reshape(-1) for w in weights.values()]), flat)


def _signed_bits(i: int, width: int) -> list[float]:
    return [1.0 if (i >> (width - 1 - b)) & 1 else -1.0 for b in range(width)]


def _by_hand(qt: QuantumTrain) -> torch.Tensor:
    """generate_flat from the circuit's probabilities, written out weight by weight."""
    probs = qt.qnn().detach()                       # (Q, 2^n)
    n, size = qt.n_qubits, qt.chunk_size
    rows, xs = [], []
    for i in range(qt.k):
        chunk, local = divmod(i, size)
        p = probs[chunk, local].item()              # weight i <- basis state i (of its chunk)
        xs.append((qt.beta * math.tanh(qt.gamma * 2 ** (n - 1) * p)) ** qt.alpha)
        rows.append(_signed_bits(chunk, qt.chunk_bits) + _signed_bits(local, n))
    x = torch.tensor(xs, dtype=torch.float64)
    x = x - x.mean()
    feats = torch.tensor(rows, dtype=torch.float32)
    with torch.no_grad():
        w = qt.mapping(torch.cat((feats, x.float().unsqueeze(1)), 1)).squeeze(1)
    return w - w.mean()


@pytest.mark.parametrize("activation", ["none", "tanh"])
def test_weight_i_comes_from_basis_state_i(activation: str) -> None:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # k = 26
    qt = QuantumTrain(target, 2, (5, 5), mapping_activation=activation)
    assert (qt.k, qt.n_qubits) == (26, 5)
    with torch.no_grad():
        flat = qt.generate_flat()
    torch.testing.assert_close(flat, _by_hand(qt), atol=1e-5, rtol=1e-4)
    # The features are exactly the ±1 bits of i, MSB first.
    assert qt.features.tolist() == [_signed_bits(i, 5) for i in range(26)]
    # probabilities() is the first k of the circuit's 2^n, in index order.
    torch.testing.assert_close(qt.probabilities(), qt.qnn()[0, :26])


def test_generated_weights_have_zero_mean() -> None:
    qt = _preset_qt("cartpole-paper")
    flat = qt.generate_flat()
    assert abs(flat.mean().item()) < 1e-6
    assert flat.std().item() > 0


@pytest.mark.parametrize("chunks", [2, 3, 4, 7])
def test_chunked_generation(chunks: int) -> None:
    torch.manual_seed(1)
    target = build_policy(4, (128,), 2)  # k = 898
    layers = 2
    qt = QuantumTrain(target, layers, (10, 10), chunks=chunks)
    k = 898
    chunk_size = math.ceil(k / chunks)
    n = math.ceil(math.log2(chunk_size))
    bits = math.ceil(math.log2(chunks))
    counts = qt.parameter_counts()
    assert (counts.qubits, counts.chunks) == (n, chunks)
    assert counts.qnn == chunks * 6 * n * layers
    assert counts.mapping == (n + bits + 1) * 10 + 10 + 10 * 10 + 10 + 11
    assert qt.features.shape == (k, n + bits)
    for i in (0, chunk_size - 1, chunk_size, k - 1):
        chunk, local = divmod(i, chunk_size)
        assert qt.features[i].tolist() == _signed_bits(chunk, bits) + _signed_bits(local, n)
    assert qt.qnn().shape == (chunks, 2**n)
    with torch.no_grad():
        flat = qt.generate_flat()
    assert flat.shape == (k,)
    torch.testing.assert_close(flat, _by_hand(qt), atol=1e-5, rtol=1e-4)
    assert {name: w.shape for name, w in qt.generate().items()} == {
        name: p.shape for name, p in target.named_parameters()}


def test_gradients_reach_circuit_and_mapping() -> None:
    qt = QuantumTrain(build_policy(4, (16,), 2), 2, (8,), chunks=2)
    loss = (qt.generate_flat() * torch.linspace(-1, 1, qt.k)).sum()
    loss.backward()
    last_bias = [name for name, _ in qt.mapping.named_parameters()][-1]
    for name, p in qt.named_parameters():
        assert p.grad is not None, name
        if name == f"mapping.{last_bias}":  # shifts every weight alike: centring removes it
            assert p.grad.abs().max() < 1e-6, name
        else:
            assert p.grad.abs().sum() > 0, name


def _conv_target() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def test_conv_batchnorm_target() -> None:
    torch.manual_seed(2)
    target = _conv_target()
    with torch.no_grad():  # non-trivial statistics, to see that they are kept
        target[1].running_mean.uniform_(-1, 1)
        target[1].running_var.uniform_(0.5, 2)
    buffers = {name: b.clone() for name, b in target.named_buffers()}
    qt = QuantumTrain(target, 2, (6,))
    expected = [(name, p.shape) for name, p in target.named_parameters()]
    assert [(name, tuple(s)) for name, s in qt.spec] == [(n, tuple(s)) for n, s in expected]
    assert qt.k == 4 * 9 + 4 + 4 + 4 + 64 * 3 + 3
    weights = qt.generate()
    assert not any("running" in name or "num_batches" in name for name in weights)
    target.eval()
    x = torch.randn(5, 1, 6, 6)
    out = qt(x)
    assert out.shape == (5, 3)
    for name, b in target.named_buffers():
        assert torch.equal(b, buffers[name]), name
    # The target's own parameters are not what runs: generated ones are.
    assert not torch.allclose(out, target(x))
    net = qt.materialize()
    net.eval()
    torch.testing.assert_close(net(x), out.detach())
    for name, b in net.named_buffers():
        assert torch.equal(b, buffers[name]), name


def test_materialize_is_a_plain_module() -> None:
    torch.manual_seed(3)
    target = build_policy(4, (32,), 2)
    qt = QuantumTrain(target, 2)
    net = qt.materialize()
    assert type(net) is type(target) and net is not target
    assert all(not isinstance(m, QuantumTrain) for m in net.modules())
    x = torch.randn(7, 4)
    torch.testing.assert_close(net(x), qt(x).detach())
    weights = qt.generate()
    torch.testing.assert_close(qt(x, weights=weights), net(x))
    assert all(not p.requires_grad or p.grad is None for p in net.parameters())


def test_same_seed_same_weights() -> None:
    def make() -> torch.Tensor:
        torch.manual_seed(42)
        qt = QuantumTrain(build_policy(4, (16,), 2), 3, (10,), chunks=2)
        with torch.no_grad():
            return qt.generate_flat()

    a, b = make(), make()
    assert torch.equal(a, b)
    torch.manual_seed(43)
    other = QuantumTrain(build_policy(4, (16,), 2), 3, (10,), chunks=2)
    assert not torch.equal(a, other.generate_flat().detach())


def test_statevector_too_large() -> None:
    need = 6 * statevector_bytes(30)
    assert statevector_bytes(30) == 8 * 2**30
    assert statevector_bytes(10, 4, torch.float64) == 4 * 16 * 2**10
    with pytest.raises(StatevectorTooLarge, match=r"30 qubits need about 48\.0 GiB"):
        check_statevector_fits(30, available=2**30)
    with pytest.raises(StatevectorTooLarge, match="4 circuit"):
        check_statevector_fits(20, circuits=4, available=1000)
    assert check_statevector_fits(30, available=need) == need
    assert issubclass(StatevectorTooLarge, MemoryError)


@pytest.mark.parametrize("kwargs, match", [
    ({"chunks": 0}, "chunks"),
    ({"chunks": -3}, "chunks"),
    ({"layers": 0}, "layers"),
    ({"ansatz": "nope"}, "ansatz"),
    ({"mapping_activation": "sigmoidish"}, "activation"),
])
def test_bad_settings_are_refused(kwargs: dict, match: str) -> None:
    args = {"layers": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        QuantumTrain(build_policy(4, (8,), 2), **args)


def test_every_activation_and_ansatz_builds() -> None:
    for act in ACTIVATIONS:
        QuantumTrain(build_policy(4, (8,), 2), 1, (4,), mapping_activation=act).generate_flat()
    qt = QuantumTrain(build_policy(4, (8,), 2), 2, (4,), ansatz="ry-cnot")
    assert qt.parameter_counts().qnn == qt.n_qubits * 2


def test_qubits_for() -> None:
    assert [qubits_for(k) for k in (1, 2, 3, 4, 5, 898, 1024, 1025, 4835)] == [
        1, 1, 2, 2, 3, 10, 10, 11, 13]
    with pytest.raises(ValueError):
        qubits_for(0)


def test_chunk_counts_that_leave_circuits_unused_are_refused():
    from qtrl.errors import UserError
    target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # k = 26
    with pytest.raises(UserError, match="chunks=8 .* try 7"):
        QuantumTrain(target, 1, (4,), chunks=8)   # 7 chunks of 4 already cover 26
    qt = QuantumTrain(target, 1, (4,), chunks=7)
    (qt.generate_flat() * torch.randn(26)).sum().backward()
    per_circuit = qt.qnn.u3_angles.grad.flatten(1).norm(dim=1)
    assert (per_circuit > 0).all()  # every circuit feeds some weight


def test_cli_info_bad_chunks_is_one_line(capsys):
    from qtrl.cli import main
    assert main(["info", "--preset", "cartpole-paper", "--chunks", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chunks=1000" in err[0]


def test_ansatz_precision_follows_its_parameters():
    from qtrl.quantum import RingU3Ansatz
    assert RingU3Ansatz(4, 2).double()().dtype == torch.float64
    with pytest.raises(ValueError, match="fuse_qubits"):
        RingU3Ansatz(4, 2, fuse_qubits=0)
    with pytest.raises(AttributeError):
        RingU3Ansatz(8, 2).fuse_qubits = 3  # the fused layout is fixed at construction
