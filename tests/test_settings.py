"""One settings object: generic flattening to a Flower run config and back (fedads._flat)."""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from fedads._flat import flatten, unflatten
from fedads.errors import InputError
from fedads.federation import FederationSettings
from fedads.flower.config import (
    DEFAULTS,
    NODE_WAIT_KEY,
    TIMEOUT_KEY,
    app_config,
    merged_config,
)
from fedads.models import ModelConfig
from fedads.protocol import ProtocolConfig

ROOT = Path(__file__).resolve().parents[1]

# Non-default values a field of each type can take and still validate. A field whose type is not
# here fails the test below with its name: add a value for the new type (or a special case).
_SPECIAL: dict[str, Any] = {
    # Valid only in combination (efficient mode, chunks > 1) or from a closed set of choices.
    "ProtocolConfig.mode": "efficient",
    "ProtocolConfig.chunk_batches": 3,
    "ProtocolConfig.pipeline": True,
    "ProtocolConfig.compression": "int8",
    "ProtocolConfig.optimizer": "sgd",
    "ProtocolConfig.defense": "max-norm",
    "FederationSettings.psi_backend": "openmined",
    "ModelConfig.social_bottom": "deepfm",  # tower zoo names (docs/models.md)
    "ModelConfig.ecommerce_bottom": "wide_deep",
    "ModelConfig.top": "dcn_v2",
}


def _other_value(cls: type, f: dataclasses.Field, hint: Any, default: Any) -> Any:
    """A valid value of field ``f`` that differs from its default."""
    name = f"{cls.__name__}.{f.name}"
    if name in _SPECIAL:
        return _SPECIAL[name]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if default is None:
            return _other_value(cls, f, inner[0], _example(inner[0]))
        return None
    if dataclasses.is_dataclass(hint):
        return _non_default(hint)
    if origin is Literal:
        return next(a for a in args if a != default)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(m for m in hint if m != default)
    if hint is bool:
        return not default
    if hint is int:
        return int(default) + 3
    if hint is float:
        return float(default) * 0.5 + 0.125 if default else 0.25
    if hint is str:  # free text (e.g. "module:attr"); a choice field needs an entry in _SPECIAL
        return f"{default}-other"
    if origin is tuple:
        return tuple(default) + tuple(default[-1:]) if default else (_example(args[0]),)
    pytest.fail(f"{name}: no non-default value for type {hint!r}; extend _other_value")


def _example(hint: Any) -> Any:
    return {int: 7, float: 0.5, str: "x", bool: True}.get(hint, 7)


def _non_default(cls: type) -> Any:
    """``cls()`` with every field (recursively) set to a valid non-default value."""
    base = cls()
    hints = typing.get_type_hints(cls)
    changes = {
        f.name: _other_value(cls, f, hints[f.name], getattr(base, f.name))
        for f in dataclasses.fields(cls)
        if f.init
    }
    try:
        return cls(**changes)
    except InputError as exc:
        pytest.fail(
            f"{cls.__name__}: a generated non-default value is invalid ({exc}); add a valid "
            "non-default value for that field to _SPECIAL in tests/test_settings.py"
        )


def test_every_field_round_trips_through_the_run_config() -> None:
    settings = _non_default(FederationSettings).validate()
    default = FederationSettings()
    for f in dataclasses.fields(FederationSettings):  # the helper really changed every field
        assert getattr(settings, f.name) != getattr(default, f.name), f.name
    for f in dataclasses.fields(ProtocolConfig):
        assert getattr(settings.protocol, f.name) != getattr(default.protocol, f.name), f.name
    config = settings.to_run_config()
    assert all(isinstance(v, bool | int | float | str) for v in config.values()), config
    assert FederationSettings.from_run_config(config) == settings
    # What travels through Flower is the TOML a pyproject or --run-config file holds.
    import tomli_w

    assert FederationSettings.from_run_config(tomllib.loads(tomli_w.dumps(config))) == settings
    assert FederationSettings.from_run_config({}) == default
    assert set(config) == set(FederationSettings.run_config_keys())


def test_the_issue_case_timeout_is_kept() -> None:
    settings = FederationSettings(protocol=ProtocolConfig(timeout_s=5))
    back = FederationSettings.from_run_config(settings.to_run_config())
    assert back.protocol.timeout_s == 5.0 and back.timeout_s == 5.0
    assert settings.to_run_config()[TIMEOUT_KEY] == 5.0


def test_model_meta_is_generic_too() -> None:
    model = _non_default(ModelConfig)
    meta = model.to_meta()
    assert set(meta) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert ModelConfig.from_meta({**meta, "seed": 3, "lr": 0.1}) == model


@dataclass(frozen=True)
class _Inner:
    width: int = 4
    names: tuple[str, ...] = ("a", "b")


class _Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class _Outer:
    """New kinds of fields other modules may add: all need no code in the flattener."""

    inner: _Inner = field(default_factory=_Inner)
    maybe: _Inner | None = None
    odd_names: tuple[str, ...] = ("x, y", " z")
    empty: tuple[int, ...] = ()
    maybe_tuple: tuple[float, ...] | None = ()
    optional_str: str | None = None
    kind: Literal["mlp", "dcn"] = "mlp"
    color: _Color = _Color.RED
    ratio: float = 1.0


def test_new_field_kinds_round_trip_without_code() -> None:
    for value in (
        _Outer(),
        _Outer(
            inner=_Inner(8, ("c",)),
            maybe=_Inner(2, ()),
            odd_names=("[", "a,b"),
            empty=(1, 2),
            maybe_tuple=None,
            optional_str="s",
            kind="dcn",
            color=_Color.BLUE,
            ratio=3,
        ),
    ):
        flat = flatten(value)
        assert all(isinstance(v, bool | int | float | str) for v in flat.values()), flat
        assert unflatten(_Outer, flat) == value
    assert flatten(_Outer())["inner-names"] == "a,b"
    assert flatten(_Outer())["maybe"] is False


def test_bad_values_name_the_key() -> None:
    with pytest.raises(InputError, match="protocol-epochs"):
        FederationSettings.from_run_config({"protocol-epochs": "many"})
    with pytest.raises(InputError, match="protocol-pipeline"):
        FederationSettings.from_run_config({"protocol-pipeline": "perhaps"})
    # Keys of the old hand-kept list are refused with the new name, not silently ignored.
    with pytest.raises(InputError, match="'epochs' is not a settings key; use 'protocol-epochs'"):
        FederationSettings.from_run_config({"epochs": 3})
    with pytest.raises(InputError, match="protocol-model-top-hidden"):
        FederationSettings.from_run_config({"model-top_hidden": "8"})
    # Adapter and party-private keys pass.
    FederationSettings.from_run_config({"job": "m:f", "social-path": "s", "state-dir": "d"})


def test_pyproject_declares_exactly_the_flattened_settings() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        declared = tomllib.load(f)["tool"]["flwr"]["app"]["config"]
    expected = app_config()
    assert declared == expected, (
        "[tool.flwr.app.config] in pyproject.toml is out of date; regenerate it with "
        "python -c 'from fedads.flower.config import app_config_toml as t; print(t())'"
    )
    assert set(FederationSettings.run_config_keys()) <= set(declared)
    assert set(DEFAULTS) <= set(declared)
    FederationSettings.from_run_config(declared)  # valid settings


def test_node_wait_follows_from_the_timeout() -> None:
    assert merged_config({TIMEOUT_KEY: 42.0})[NODE_WAIT_KEY] == 42.0
    assert merged_config({TIMEOUT_KEY: 42.0, NODE_WAIT_KEY: 3.0})[NODE_WAIT_KEY] == 3.0
    assert merged_config()[TIMEOUT_KEY] == ProtocolConfig().timeout_s
