"""The trained policy out of the project: classical files, no quantum part.

After training, the Quantum-Train weights form a plain classical network
(docs/ARCHITECTURE.md); inference needs only a CPU or GPU. Three formats:

- ``state_dict`` (``.pt``): ``torch.save`` of a plain dict — the weights plus
  the architecture (observation size, hidden sizes, actions, environment) that
  :func:`qtrl.presets.build_policy` needs to rebuild the network. Loads with
  ``torch.load(..., weights_only=True)``: no pickled code.
- ``exported`` (``.pt2``): a ``torch.export`` program with a dynamic batch
  dimension (``torch.export.save``); the metadata travels inside the archive as
  the extra file ``qtrl_meta.json``. TorchScript is deprecated in our torch and
  is not offered.
- ``onnx`` (``.onnx``): one self-contained ONNX file (weights inside, no
  external-data side file) with a dynamic batch dimension, produced by the
  dynamo exporter from the ``torch.export`` program; the metadata is stored in
  the model's ``metadata_props``. Runs on ONNX Runtime.

Every exported network maps ``obs (batch, obs_dim) float32 -> logits
(batch, n_actions) float32``; the action distribution is the softmax of the
logits, as in training.

Files are written to a temporary file in the target directory and moved into
place with ``os.replace``: an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__
from .errors import UserError
from .presets import ACTIVATION_LAYERS, build_policy
from .run.atomic import atomic_write_bytes

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "ExportedPolicy",
    "PolicyMeta",
    "evaluate_exported",
    "export_policy",
    "format_for_path",
    "load_exported",
    "onnx_session",
    "policy_architecture",
]

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"state_dict": ".pt", "exported": ".pt2", "onnx": ".onnx"}
"""Export format -> file suffix it is written with."""

SUFFIXES: dict[str, str] = {".pt": "state_dict", ".pth": "state_dict", ".pt2": "exported",
                            ".onnx": "onnx"}
"""File suffix -> the format :func:`load_exported` reads it as."""

STATE_DICT_KIND = "qtrl-policy"   # the "kind" entry of a state_dict export
STATE_DICT_VERSION = 1
META_FILE = "qtrl_meta.json"      # extra file inside a .pt2 archive
ONNX_INPUT, ONNX_OUTPUT = "obs", "logits"


# ------------------------------------------------------------------------------------
# Metadata
# ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyMeta:
    """What a deployed policy needs to be rebuilt and evaluated."""

    env_id: str                      # Gymnasium id the policy was trained on
    obs_dim: int                     # flattened observation size (input width)
    hidden: tuple[int, ...]          # hidden layer sizes (MLP of build_policy)
    n_actions: int                   # logits per observation (the first n actions), or
                                     # the continuous action's dimension (its mean)
    max_steps: int | None = None     # per-episode step cap used in training (None: env's)
    mode: str | None = None          # "quantum-train" or "classical", when known
    qtrl_version: str = __version__  # qtrl that wrote the file
    activation: str = "relu"         # between the layers: relu or tanh
    continuous: bool = False         # outputs a continuous action's mean, not logits
    env_kwarg: tuple[str, ...] = ()  # the task's KEY=VALUE arguments, as trained
    players: tuple[str, ...] = ()    # a multi-agent task's players, in one-hot order (the
                                     # input: [local observation | player one-hot])
    player: str | None = None        # the player this network plays (None: every player)

    @classmethod
    def from_policy(cls, policy: nn.Module, env_id: str, max_steps: int | None = None,
                    mode: str | None = None, continuous: bool = False) -> PolicyMeta:
        """Metadata of a :func:`~qtrl.presets.build_policy` network."""
        obs_dim, hidden, n_actions = policy_architecture(policy)
        return cls(env_id, obs_dim, hidden, n_actions, max_steps, mode,
                   activation=policy_activation(policy), continuous=continuous)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (its tuples as lists)."""
        data = asdict(self)
        return data | {k: list(data[k]) for k in ("hidden", "env_kwarg", "players")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyMeta:
        """Inverse of :meth:`to_dict`; unknown keys (from newer files) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["hidden"] = tuple(int(h) for h in values.get("hidden", ()))
        values |= {k: tuple(map(str, values.get(k, ()))) for k in ("env_kwarg", "players")}
        return cls(**values)

    def to_strings(self) -> dict[str, str]:
        """Flat ``{key: text}`` for ONNX ``metadata_props``: strings as they are,
        everything else as JSON (``hidden`` → ``"[128]"``, ``max_steps`` → ``"null"``)."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_strings(cls, props: dict[str, str]) -> PolicyMeta:
        """Inverse of :meth:`to_strings`."""
        text_fields = {"env_id", "mode", "qtrl_version", "activation", "player"}
        data: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in props:
                raw = props[f.name]
                data[f.name] = raw if f.name in text_fields and raw != "null" else json.loads(raw)
        return cls.from_dict(data)

    @property
    def architecture(self) -> str:
        """``"4-128-2"``."""
        return "-".join(map(str, (self.obs_dim, *self.hidden, self.n_actions)))


def policy_architecture(policy: nn.Module) -> tuple[int, tuple[int, ...], int]:
    """``(obs_dim, hidden sizes, n_actions)`` of a network made by
    :func:`~qtrl.presets.build_policy` (``Linear`` layers with ``ReLU`` between).

    Raises ``ValueError`` for any other module.
    """
    mods = list(policy) if isinstance(policy, nn.Sequential) else []
    linears = mods[0::2]
    acts = mods[1::2]
    if (not mods or len(mods) % 2 == 0 or not all(isinstance(m, nn.Linear) for m in linears)
            or len({type(m) for m in acts}) > 1
            or not all(type(m) in ACTIVATION_LAYERS.values() for m in acts)):
        raise ValueError("expected the policy MLP of qtrl.presets.build_policy "
                         "(nn.Sequential of Linear layers with ReLU or Tanh between), got "
                         f"{type(policy).__name__}")
    sizes = [linears[0].in_features] + [m.out_features for m in linears]
    return sizes[0], tuple(sizes[1:-1]), sizes[-1]


def policy_activation(policy: nn.Module) -> str:
    """The activation name (a key of :data:`~qtrl.presets.ACTIVATION_LAYERS`) of a
    :func:`~qtrl.presets.build_policy` network; ``relu`` without hidden layers."""
    names = {cls: name for name, cls in ACTIVATION_LAYERS.items()}
    acts = list(policy)[1::2]
    return names[type(acts[0])] if acts else "relu"


def format_for_path(path: Path | str) -> str:
    """The format a file is read as, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"{path}: unknown policy file type {suffix or '(no suffix)'!r}; "
                        f"accepted are {', '.join(sorted(SUFFIXES))}")
    return SUFFIXES[suffix]


# ------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------

def export_policy(policy: nn.Module, path: Path | str, fmt: str, meta: PolicyMeta,
                  *, overwrite: bool = False) -> Path:
    """Write ``policy`` (``obs (batch, meta.obs_dim) -> logits (batch, meta.n_actions)``)
    to ``path`` in format ``fmt`` (a key of :data:`FORMATS`), atomically.

    ``policy`` is not modified (an eval-mode float32 copy is exported). The
    ``state_dict`` format needs a :func:`~qtrl.presets.build_policy` network of
    ``meta``'s architecture; the other two take any module that
    ``torch.export`` can trace. Returns the path written.

    Raises :class:`UserError` for an unknown format, an existing ``path``
    without ``overwrite``, an unwritable location, or a policy that does not
    match ``meta``.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    path = Path(path)
    _check_writable(path, overwrite)
    net = _frozen_copy(policy)
    _check_matches(net, meta)
    if fmt == "state_dict":
        data = _state_dict_bytes(net, meta)
    else:
        program = _export_program(net, meta.obs_dim)
        data = _pt2_bytes(program, meta) if fmt == "exported" else _onnx_bytes(program, meta)
    _atomic_write(path, data)
    log.info("exported %s policy %s (%s) to %s, %d bytes", fmt, meta.architecture,
             meta.env_id, path, len(data))
    return path


def _check_writable(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UserError(f"output {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"output {path} already exists; choose another name or overwrite "
                        f"it with --force")
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"output {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output {path}: directory {parent} is not writable")


def _frozen_copy(policy: nn.Module) -> nn.Module:
    """An eval-mode float32 copy with no gradients, the caller's module untouched."""
    import copy
    net = copy.deepcopy(policy).float().eval()
    net.requires_grad_(False)
    return net


def _check_matches(net: nn.Module, meta: PolicyMeta) -> None:
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, meta.obs_dim))
    except RuntimeError as err:
        raise UserError(f"the policy does not take observations of size {meta.obs_dim} "
                        f"({err})") from None
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, meta.n_actions):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UserError(f"the policy returns {shape} for 2 observations, expected logits "
                        f"(2, {meta.n_actions})")


def _state_dict_bytes(net: nn.Module, meta: PolicyMeta) -> bytes:
    try:
        arch = policy_architecture(net)
    except ValueError as err:
        raise UserError(f"state_dict export: {err}; use --format exported or onnx") from None
    if arch != (meta.obs_dim, meta.hidden, meta.n_actions):
        raise UserError(f"state_dict export: the policy is "
                        f"{'-'.join(map(str, (arch[0], *arch[1], arch[2])))}, the metadata "
                        f"says {meta.architecture}")
    payload = {
        "kind": STATE_DICT_KIND,
        "version": STATE_DICT_VERSION,
        "meta": meta.to_dict(),
        "state_dict": {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _export_program(net: nn.Module, obs_dim: int) -> torch.export.ExportedProgram:
    """``torch.export`` of ``net`` with a dynamic batch dimension (any batch >= 1)."""
    batch = torch.export.Dim("batch", min=1)
    example = torch.zeros(2, obs_dim)   # batch 2: a batch of 1 would be specialised
    return torch.export.export(net, (example,), dynamic_shapes=({0: batch},))


def _pt2_bytes(program: torch.export.ExportedProgram, meta: PolicyMeta) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={META_FILE: json.dumps(meta.to_dict())})
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence these loggers below ERROR, and deprecations: the exporter's chatter, or
    the traceback torch.export.load logs before raising on a bad file (ours is one line)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnx_bytes(program: torch.export.ExportedProgram, meta: PolicyMeta) -> bytes:
    onnx = _require("onnx")
    _require("onnxscript")
    with _quiet("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript"):
        onnx_program = torch.onnx.export(program, input_names=[ONNX_INPUT],
                                         output_names=[ONNX_OUTPUT], dynamo=True,
                                         external_data=False, verbose=False)
    proto = onnx_program.model_proto
    onnx.helper.set_model_props(proto, meta.to_strings())
    proto.doc_string = (f"qtrl {__version__} policy {meta.architecture} for {meta.env_id}: "
                        f"{ONNX_INPUT} (batch, {meta.obs_dim}) float32 -> {ONNX_OUTPUT} "
                        f"(batch, {meta.n_actions}) float32, softmax gives the action "
                        f"probabilities")
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer):
        raise RuntimeError("the ONNX model references external data; expected one file")
    return data


def _require(module: str) -> Any:
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"the ONNX format needs the {module!r} package; install the export "
                        f"extra: pip install 'qtrl[export]'") from None


def _atomic_write(path: Path, data: bytes) -> None:
    """:func:`~qtrl.run.atomic.atomic_write_bytes` through a temporary file of
    this process's own (two exports may target one path); a failure is one line."""
    try:
        atomic_write_bytes(path, data, tmp=path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None


# ------------------------------------------------------------------------------------
# Loading and inference
# ------------------------------------------------------------------------------------

class ExportedPolicy:
    """An exported policy file, ready to run: ``policy(obs) -> logits``.

    ``obs``: ``(batch, obs_dim)`` float32 array (any batch >= 1);
    returns ``(batch, n_actions)`` float32 numpy logits. It is an
    :data:`qtrl.rl.policy.Actor`, so roll-outs take it as it is.

    Attributes:
        path: the file.
        fmt: ``"state_dict"``, ``"exported"`` or ``"onnx"``.
        meta: the metadata stored in the file.
        backend: ``"torch"``, ``"torch.export"`` or ``"onnxruntime"``.
    """

    def __init__(self, path: Path, fmt: str, meta: PolicyMeta, backend: str,
                 run: Callable[[np.ndarray], np.ndarray]) -> None:
        self.path, self.fmt, self.meta, self.backend = path, fmt, meta, backend
        self._run = run

    def __call__(self, obs: np.ndarray | Tensor) -> np.ndarray:
        if isinstance(obs, Tensor):
            obs = obs.detach().cpu().numpy()
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.meta.obs_dim or obs.shape[0] < 1:
            raise ValueError(f"observations must be (batch >= 1, {self.meta.obs_dim}), got "
                             f"{obs.shape}")
        return self._run(obs)

    def __repr__(self) -> str:
        return (f"ExportedPolicy({str(self.path)!r}, fmt={self.fmt!r}, "
                f"{self.meta.architecture}, env={self.meta.env_id!r})")


def load_exported(path: Path | str, threads: int | None = None) -> ExportedPolicy:
    """Open an exported policy; the format follows the suffix (see :data:`SUFFIXES`).

    ``.onnx`` runs on an ONNX Runtime CPU session (``threads`` intra-op threads,
    default ORT's choice), ``.pt2`` as ``torch.export.load(path).module()``,
    ``.pt``/``.pth`` by rebuilding :func:`~qtrl.presets.build_policy` from the
    stored architecture. Torch runs use torch's current thread count.

    Raises :class:`UserError` when the file is missing, of an unknown type,
    corrupt, or not written by qtrl.
    """
    path = Path(path)
    fmt = format_for_path(path)
    if not path.is_file():
        raise UserError(f"policy file {path} does not exist")
    if fmt == "onnx":
        return _load_onnx(path, threads)
    return _load_pt2(path) if fmt == "exported" else _load_state_dict(path)


def _load_state_dict(path: Path) -> ExportedPolicy:
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        raise UserError(f"{path} is not a readable torch file ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("kind") != STATE_DICT_KIND:
        raise UserError(f"{path} is not a qtrl state_dict export (no kind={STATE_DICT_KIND!r})")
    if payload.get("version") != STATE_DICT_VERSION:
        raise UserError(f"{path}: state_dict export version {payload.get('version')!r}, this "
                        f"qtrl reads version {STATE_DICT_VERSION}")
    meta = _meta(lambda: PolicyMeta.from_dict(payload["meta"]), path)
    net = build_policy(meta.obs_dim, meta.hidden, meta.n_actions, meta.activation)
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise UserError(f"{path}: the weights do not fit a {meta.architecture} policy "
                        f"({err})") from None
    return ExportedPolicy(path, "state_dict", meta, "torch", _torch_runner(net.eval()))


def _load_pt2(path: Path) -> ExportedPolicy:
    extra = {META_FILE: ""}
    try:
        with _quiet("torch.export"):
            program = torch.export.load(path, extra_files=extra)
    except Exception as err:  # noqa: BLE001 - any unreadable archive is a user error here
        raise UserError(f"{path} is not a readable torch.export program "
                        f"({type(err).__name__}: {err})") from None
    if not extra[META_FILE]:
        raise UserError(f"{path} holds no qtrl metadata ({META_FILE}); was it written by "
                        f"qtrl export?")
    meta = _meta(lambda: PolicyMeta.from_dict(json.loads(extra[META_FILE])), path)
    return ExportedPolicy(path, "exported", meta, "torch.export",
                          _torch_runner(program.module()))


def _meta(decode: Callable[[], PolicyMeta], path: Path) -> PolicyMeta:
    """The file's metadata (``decode()``); one line when it does not describe a policy."""
    try:
        meta = decode()
        sizes = (meta.obs_dim, *meta.hidden, meta.n_actions)
        if not (isinstance(meta.env_id, str) and all(type(n) is int and n > 0 for n in sizes)):
            raise ValueError(f"env_id {meta.env_id!r}, sizes {sizes}")
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise UserError(f"{path}: its qtrl metadata is not valid ({err})") from None
    return meta


def _torch_runner(module: Callable[[Tensor], Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    def run(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(obs)).numpy()
    return run


def onnx_session(path: Path | str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU ``InferenceSession`` (sequential execution; ``threads``
    intra-op threads, ``None``: ORT's default)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
        raise UserError(f"{path} is not a loadable ONNX model ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None


def _load_onnx(path: Path, threads: int | None) -> ExportedPolicy:
    session = onnx_session(path, threads)
    props = session.get_modelmeta().custom_metadata_map
    if "env_id" not in props:
        raise UserError(f"{path} holds no qtrl metadata (metadata_props env_id, obs_dim, …); "
                        f"was it written by qtrl export?")
    meta = _meta(lambda: PolicyMeta.from_strings(props), path)
    name = session.get_inputs()[0].name

    def run(obs: np.ndarray) -> np.ndarray:
        return session.run(None, {name: obs})[0]
    return ExportedPolicy(path, "onnx", meta, "onnxruntime", run)


# ------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------

def evaluate_exported(path: Path | str | ExportedPolicy, env_id: str | None = None,
                      episodes: int = 100, greedy: bool = False, seed: int = 0,
                      max_steps: int | None = None) -> tuple[np.ndarray, PolicyMeta]:
    """Play ``episodes`` episodes with an exported policy file (or one opened);
    no torch model of the run and no quantum part involved (ONNX files run on
    ONNX Runtime). A multi-agent task's: :func:`qtrl.exported_team.evaluate_team`.

    ``env_id`` and ``max_steps`` default to those stored in the file. The
    episodes, seeds and action draws are those of :func:`qtrl.train.evaluate`
    for the same ``seed``, so an export evaluates like its run.

    Returns the undiscounted return of each episode, ``(episodes,)`` float64,
    and the file's metadata.
    """
    from .config import is_multiagent
    from .rl.env import env_dims
    from .rl.rollout import evaluation_returns

    if episodes < 1:
        raise UserError(f"--episodes {episodes}: must be a positive integer")
    policy = path if isinstance(path, ExportedPolicy) else load_exported(path, threads=1)
    meta = policy.meta
    if is_multiagent(meta.env_id):
        raise UserError(f"{policy.path}: a policy of the multi-agent task {meta.env_id}; play "
                        f"it with its team's files (qtrl eval FILE [FILE ...])")
    env_id = env_id or meta.env_id
    max_steps = max_steps if max_steps is not None else meta.max_steps
    obs_dim, actions = env_dims(env_id)
    if obs_dim != meta.obs_dim or meta.n_actions > actions:
        raise UserError(f"{policy.path}: a {meta.architecture} policy ({meta.obs_dim} observations, "
                        f"{meta.n_actions} actions) does not fit {env_id} ({obs_dim} "
                        f"observations, {actions} actions)")
    returns = evaluation_returns(env_id, max_steps, policy, episodes, seed, greedy)
    log.info("evaluated %s on %s: %d episodes, mean return %.2f", policy.path, env_id, episodes,
             float(returns.mean()))
    return returns, meta
