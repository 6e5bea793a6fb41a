"""The integers a run can hold: a seed is 0 to 2**64-1 (what ``torch.manual_seed``
takes), every other count or size at most 2**63-1 (they become int64 tensors
and C longs). Checked before anything computes with them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .errors import UserError

__all__ = ["INT_MAX", "SEED_MAX", "check_int_fields", "check_seed", "shown_int"]

SEED_MAX = 2**64 - 1
INT_MAX = 2**63 - 1


def shown_int(value: Any) -> str:
    """``value`` as text, a very long integer abbreviated."""
    text = str(value)
    return f"{text[:12]}... ({len(text)} digits)" if len(text) > 40 else text


def check_seed(flag: str, seed: Any) -> None:
    """``UserError`` naming ``flag`` unless ``seed`` is an integer from 0 to 2**64-1."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"{flag} {shown_int(seed)}: must be an integer from 0 to 2**64-1 "
                        f"({SEED_MAX})")


def check_int_fields(obj: Any) -> None:
    """``UserError`` naming the flag of the first integer field of dataclass ``obj``
    (or integer in a tuple field) above 2**63-1; ``seed`` is checked by
    :func:`check_seed`."""
    for f in fields(obj):
        if f.name == "seed":
            check_seed(f.metadata.get("flag", "--seed"), obj.seed)
            continue
        values = getattr(obj, f.name)
        for value in values if isinstance(values, tuple) else (values,):
            if isinstance(value, int) and not isinstance(value, bool) and value > INT_MAX:
                flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
                raise UserError(f"{flag} {shown_int(value)}: too large; at most 2**63-1 "
                                f"({INT_MAX})")
