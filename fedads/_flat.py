"""Settings dataclasses <-> flat dicts of scalars, generically from ``dataclasses.fields``.

One settings object (:class:`fedads.federation.FederationSettings`, with its nested
:class:`~fedads.protocol.ProtocolConfig`, :class:`~fedads.models.ModelConfig`,
:class:`~fedads.align.KeyNormalization`) has to travel as a Flower run config, whose values can
only be ``bool``, ``int``, ``float`` or ``str``. :func:`flatten` and :func:`unflatten` do that for
*any* dataclass, so a new field needs no extra code:

* each field becomes one key: its name in kebab case (``batch_size`` -> ``batch-size``);
  a nested dataclass field prefixes its own keys (``protocol`` -> ``protocol-batch-size``);
* ``bool`` / ``int`` / ``float`` / ``str`` / ``Literal`` / ``Enum`` values pass as scalars;
* a tuple becomes text: ``(64, 32)`` -> ``"64,32"`` (JSON, ``'["a,b", "c"]'``, when a string
  element holds a comma or space at its ends; ``()`` is ``""``, or ``"[]"`` when the field may
  also be ``None``);
* ``None`` (an optional field) becomes ``""``;
* a field may name its key outright with ``field(metadata={RUN_CONFIG_KEY: "timeout-s"})``
  (no prefix; used where a Flower-side key must keep a short, stable name);
* an optional nested dataclass (``X | None``) adds a presence key ``<name>`` (``True``/``False``)
  next to its fields (filled with ``X()``'s defaults while absent).

:func:`unflatten` restores the types from the field annotations (so ``"64,32"`` comes back as
``(64, 32)``, an int from TOML for a float field as a float, ``"true"`` for a bool as ``True``),
takes a missing key's value from the field's default, and ignores keys it does not know (a Flower
run config carries other keys too). ``style="field"`` keeps the field names as they are (what
envelope meta uses, :meth:`fedads.models.ModelConfig.to_meta`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

from fedads.errors import InputError

Scalar = bool | int | float | str
Style = Literal["kebab", "field"]

_NONE = ""
RUN_CONFIG_KEY = "run_config_key"
"""Field-metadata entry that names a field's flat key outright (kebab style only)."""


def flatten(obj: Any, *, style: Style = "kebab", prefix: str = "") -> dict[str, Scalar]:
    """``obj`` (a dataclass instance) as a flat ``{key: scalar}`` dict; see the module doc."""
    out: dict[str, Scalar] = {}
    cls = type(obj)
    for field, hint in _fields(cls):
        key = _field_key(field, prefix, style)
        value = getattr(obj, field.name)
        _flatten_value(out, key, value, hint, style, f"{cls.__name__}.{field.name}")
    return out


def unflatten(
    cls: type[Any], flat: Mapping[str, Any], *, style: Style = "kebab", prefix: str = ""
) -> Any:
    """Inverse of :func:`flatten`: a ``cls`` instance from ``flat`` (missing keys: defaults).

    Raises:
        InputError: a value cannot be converted to its field's type (names the key).
    """
    kwargs: dict[str, Any] = {}
    for field, hint in _fields(cls):
        key = _field_key(field, prefix, style)
        found, value = _unflatten_value(flat, key, hint, style)
        if found:
            kwargs[field.name] = value
    return cls(**kwargs)


def flat_keys(cls: type[Any], *, style: Style = "kebab", prefix: str = "") -> tuple[str, ...]:
    """Every key :func:`flatten` writes for ``cls`` (of a default-constructed instance)."""
    return tuple(flatten(cls(), style=style, prefix=prefix))


# ------------------------------------------------------------------------------ internals
@cache
def _fields(cls: type[Any]) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls) if f.init)


def _field_key(field: dataclasses.Field[Any], prefix: str, style: Style) -> str:
    if style == "kebab" and RUN_CONFIG_KEY in field.metadata:
        return str(field.metadata[RUN_CONFIG_KEY])
    return _key(prefix, field.name, style)


def _key(prefix: str, name: str, style: Style) -> str:
    part = name.replace("_", "-") if style == "kebab" else name
    if not prefix:
        return part
    return f"{prefix}-{part}" if style == "kebab" else f"{prefix}_{part}"


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; ``X`` -> ``(X, False)`` (``X`` may itself be a union)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            inner = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
            return inner, True
    return hint, False


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _flatten_value(
    out: dict[str, Scalar], key: str, value: Any, hint: Any, style: Style, where: str
) -> None:
    inner, optional = _split_optional(hint)
    if _is_dataclass_type(inner):
        if optional:
            out[key] = value is not None
            value = inner() if value is None else value
        nested = flatten(value, style=style, prefix=key)
        clash = set(nested) & set(out)
        if clash:
            raise TypeError(f"{where}: flattened keys {sorted(clash)} collide; rename a field")
        out.update(nested)
        return
    if key in out:
        raise TypeError(f"{where}: flattened key {key!r} collides with another field")
    if value is None:
        out[key] = _NONE
        return
    if typing.get_origin(inner) is tuple or inner is tuple:
        out[key] = _tuple_text(value, optional)
        return
    if isinstance(value, enum.Enum):
        out[key] = value.value
        return
    if isinstance(value, bool | int | float | str):
        # A float field holds a float in the config even when given as 5 (TOML keeps types).
        out[key] = float(value) if inner is float and not isinstance(value, bool) else value
        return
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        out[key] = value.item()
        return
    raise TypeError(
        f"{where}: {value!r} ({type(value).__name__}) cannot travel in a Flower run config; "
        "settings fields must be bool/int/float/str, tuples of those, Enums, or dataclasses"
    )


def _tuple_text(value: Any, optional: bool) -> str:
    items = list(value)
    if not items:
        return "[]" if optional else ""
    plain = all(
        not isinstance(x, str) or (x and "," not in x and x == x.strip() and not x.startswith("["))
        for x in items
    )
    if plain:
        return ",".join(str(x) if not isinstance(x, float) else repr(x) for x in items)
    return json.dumps(items)


def _unflatten_value(
    flat: Mapping[str, Any], key: str, hint: Any, style: Style
) -> tuple[bool, Any]:
    inner, optional = _split_optional(hint)
    if _is_dataclass_type(inner):
        if optional and key in flat and not _to_bool(key, flat[key]):
            return True, None
        prefix_keys = [k for k in flat if str(k).startswith(_key(key, "", style))]
        if not prefix_keys and not (optional and key in flat):
            return False, None
        return True, unflatten(inner, flat, style=style, prefix=key)
    if key not in flat:
        return False, None
    raw = flat[key]
    if optional and (raw is None or raw == _NONE):
        return True, None
    return True, _convert(key, raw, inner)


def _convert(key: str, raw: Any, hint: Any) -> Any:
    """``raw`` (a run-config scalar) as a value of type ``hint``."""
    origin = typing.get_origin(hint)
    try:
        if hint is Any:
            return raw
        if origin is Literal:
            choices = typing.get_args(hint)
            if raw in choices:
                return raw
            return _convert(key, raw, type(choices[0]))
        if origin in (typing.Union, types.UnionType):
            options = typing.get_args(hint)
            if any(isinstance(raw, o) for o in options if isinstance(o, type)):
                return raw
            for option in options:
                try:
                    return _convert(key, raw, option)
                except InputError:
                    continue
            raise ValueError(f"none of {options}")
        if origin is tuple or hint is tuple:
            return _parse_tuple(key, raw, typing.get_args(hint))
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return hint(raw)
        if hint is bool:
            return _to_bool(key, raw)
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("not an integer")
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError("not a number")
            return float(raw)
        if hint is str:
            return str(raw)
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise InputError(
            f"run config {key!r}: {raw!r} is not a valid {_type_name(hint)} ({exc}); "
            "give a value of that type"
        ) from None
    raise InputError(f"run config {key!r}: fields of type {_type_name(hint)} are not supported")


def _to_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    raise InputError(f"run config {key!r}: {raw!r} is not a bool; give true or false")


def _parse_tuple(key: str, raw: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(raw, list | tuple):
        items = list(raw)
    else:
        text = str(raw).strip()
        if text.startswith("["):
            items = json.loads(text)
        elif not text:
            items = []
        else:
            items = [part.strip() for part in text.split(",")]
    if len(args) == 2 and args[1] is Ellipsis:
        types_ = [args[0]] * len(items)
    elif args:
        if len(args) != len(items):
            raise ValueError(f"expected {len(args)} items, got {len(items)}")
        types_ = list(args)
    else:
        types_ = [Any] * len(items)
    return tuple(_convert(key, item, t) for item, t in zip(items, types_, strict=True))


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
