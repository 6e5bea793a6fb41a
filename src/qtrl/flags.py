"""The command line's view of :class:`~qtrl.config.TrainConfig`: one ``--flag``
per field (:func:`add_dataclass_flags`), and the configuration of parsed flags,
a preset's or an algorithm's defaults filled in (:func:`config_from_flags`)."""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from .config import TrainConfig
from .presets import ALGO_DEFAULTS

__all__ = ["add_dataclass_flags", "config_from_flags", "given_flags"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _optional_inner(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _none_or(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type,
                        shown: Any | None = None) -> None:
    """Add one ``--flag`` per field of dataclass ``cls``.

    Every flag defaults to :data:`argparse.SUPPRESS`, so the parsed namespace
    holds exactly the flags the user gave (preset defaults fill in the rest).
    Types: ``int``/``float``/``str``; ``X | None`` also accepts ``none``;
    ``tuple[int, ...]`` takes one or more values; ``bool`` is a switch
    ``--x`` with its ``--no-x``.
    ``shown``: an instance whose values the help lists as defaults (default:
    the dataclass defaults).
    """
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp, optional = _optional_inner(hints[f.name])
        meta = f.metadata
        default = getattr(shown, f.name) if shown is not None else (
            None if f.default is MISSING else f.default)
        help_text = meta.get("help", "")
        if default is not None and not isinstance(default, bool):
            text = " ".join(map(str, default)) if isinstance(default, tuple) else default
            help_text += f" (default: {text})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": help_text}
        if tp is bool:   # --x and --no-x: a preset's switch can be turned off
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if _is_tuple(tp):
                inner = typing.get_args(tp)[0]
                kwargs.update(nargs="+", type=inner, metavar=f.name[0].upper())
                if meta.get("repeat"):   # --flag A --flag B C: all of them, in order
                    kwargs.update(action="extend", metavar=f.name.upper())
            else:
                kwargs["type"] = _none_or(tp) if optional else tp
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
            else:
                kwargs["metavar"] = kwargs.get("metavar", f.name.upper())
        parser.add_argument(meta.get("flag", _flag(f.name)), **kwargs)


def config_from_flags(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed flags: the preset's defaults (``cartpole``
    when neither ``--preset`` nor ``--env`` is given), then the given flags.
    ``--env`` without a preset starts from the defaults of ``--algo`` (PPO's
    when not given, :data:`qtrl.presets.ALGO_DEFAULTS`)."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    preset = given.pop("preset", None)
    if preset is None and "env" not in given:
        preset = "cartpole"
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    if preset is None:
        given = {**ALGO_DEFAULTS[given.get("algo", "ppo")], **given}
    return TrainConfig.from_preset(preset, **given)


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Fields of :class:`TrainConfig` that the user set explicitly."""
    return {f.name: (tuple(v) if isinstance(v := getattr(args, f.name), list) else v)
            for f in fields(TrainConfig) if hasattr(args, f.name)}

