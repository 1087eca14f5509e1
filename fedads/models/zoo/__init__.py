"""The tower zoo: bottom and top families, by name, and ``"module:attr"`` factories.

Every family is one module with two factories of the same signatures as every custom tower:

* ``bottom(spec: TowerSpec, config: ModelConfig) -> nn.Module``; the module is called as
  ``module(numeric float32 [b, n_num], categorical int64 [b, n_cat])`` and returns float32
  ``[b, d]`` (``d``: its ``output_dim`` attribute, else probed with one zero row);
* ``top(input_dim: int, config: ModelConfig) -> nn.Module``; the module maps float32
  ``[b, input_dim]`` (the bottoms' outputs concatenated in ``PARTY_ORDER``) to logits ``[b]``
  (or ``[b, 1]``).

Families (:data:`ZOO`): ``"mlp"`` (default), ``"wide_deep"``, ``"deepfm"``, ``"dcn_v2"``.

A tower *spec* is a zoo name or an importable ``"package.module:factory"`` string (the attribute
may be dotted, ``"module:Class.method"``). Specs are plain strings so they travel in
``ModelConfig`` through Flower's run config and the setup message; each party imports its own
factory where it runs. Factories are called inside ``fedads.models.nets.seeded`` by the builders,
so any torch default or ``nn.init`` initializer gives the same weights in every runner.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from fedads._validation import fail
from fedads.models.zoo import dcn_v2, deepfm, mlp, wide_deep

ZOO: dict[str, ModuleType] = {
    "mlp": mlp,
    "wide_deep": wide_deep,
    "deepfm": deepfm,
    "dcn_v2": dcn_v2,
}
"""Zoo name -> family module (with ``bottom`` and ``top`` factories)."""

ROLES = ("bottom", "top")


def check_tower_spec(where: str, name: str, spec: Any) -> str:
    """Check the *form* of a tower spec (a zoo name or ``"module:attr"``) without importing it."""
    if not isinstance(spec, str) or not spec.strip():
        raise fail(
            where,
            f"{name}={spec!r} is not a tower name",
            f"give one of {sorted(ZOO)} or an importable 'module:factory' string",
        )
    if ":" in spec:
        module, _, attr = spec.partition(":")
        if not module.strip() or not attr.strip() or ":" in attr:
            raise fail(
                where,
                f"{name}={spec!r} is not of the form 'module:attr'",
                "write e.g. 'my_package.towers:my_bottom'",
            )
        return spec
    if spec not in ZOO:
        raise fail(
            where,
            f"{name}={spec!r} is not a zoo tower",
            f"use one of {sorted(ZOO)} or an importable 'module:factory' string",
        )
    return spec


def resolve_tower(spec: str, role: str) -> Callable[..., Any]:
    """The factory a tower spec names, for ``role`` ``"bottom"`` or ``"top"``.

    A zoo name gives that family's ``bottom`` / ``top``; ``"module:attr"`` imports ``module``
    and returns ``attr`` (the same factory may then serve one role only: give the bottom's and
    the top's specs separately).

    Raises:
        InputError: unknown name, module not importable, attribute missing or not callable.
    """
    where = f"tower {role}"
    check_tower_spec(where, "spec", spec)
    if role not in ROLES:
        raise fail(where, f"role={role!r}", f"use one of {list(ROLES)}")
    if ":" not in spec:
        return getattr(ZOO[spec], role)
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name.strip())
    except ImportError as error:
        raise fail(
            where,
            f"cannot import module {module_name!r} of {spec!r} ({error})",
            "make the module importable where this party runs (install it, or add its folder "
            "to PYTHONPATH)",
        ) from error
    for part in attr.strip().split("."):
        if not hasattr(target, part):
            raise fail(
                where,
                f"module {module_name!r} has no attribute {attr!r}",
                "check the name after the colon in the tower spec",
            )
        target = getattr(target, part)
    if not callable(target):
        raise fail(where, f"{spec!r} is not callable", f"point it at a {role} factory function")
    return target


def resolve_bottom(spec: str) -> Callable[..., Any]:
    """The bottom factory ``(TowerSpec, ModelConfig) -> nn.Module`` a spec names."""
    return resolve_tower(spec, "bottom")


def resolve_top(spec: str) -> Callable[..., Any]:
    """The top factory ``(input_dim: int, ModelConfig) -> nn.Module`` a spec names."""
    return resolve_tower(spec, "top")


__all__ = [
    "ZOO",
    "check_tower_spec",
    "dcn_v2",
    "deepfm",
    "mlp",
    "resolve_bottom",
    "resolve_top",
    "resolve_tower",
    "wide_deep",
]
