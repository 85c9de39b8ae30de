"""Type checks for planner configs, driven by the dataclass field annotations (written once).

Settings often come from JSON (``wmplan bench --planner-settings``), where a typo such as
``"iterations": "two"`` or ``"lr": NaN`` would otherwise fail deep inside a planner or, worse, pass the
range checks (every comparison with NaN is False) and make the planner do nothing. Each config calls
`check_settings(self)` first in ``__post_init__``; its own range and cross-field checks follow.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing

__all__ = ["check_settings"]


def check_settings(config) -> None:
    """Check every field of a frozen config dataclass against its annotation, normalising in place.

    int fields take whole numbers (a JSON ``2.0`` becomes ``2``); float fields take finite real
    numbers; bool fields take True/False; ``tuple[float, ...]`` fields take a list or tuple of those;
    a field typed as another config dataclass also takes a dict of that config's settings.

    Raises:
        ValueError: naming the field, the bad value and what it should be.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        name = f"{type(config).__name__}.{f.name}"
        value = _checked(getattr(config, f.name), hints[f.name], name, _default(f))
        object.__setattr__(config, f.name, value)  # frozen: normalise once, at construction


def _checked(value, kind, name: str, default):
    """`value` converted to `kind`, or a ValueError saying what `name` should be."""
    hint = "" if default is None else f" (default {default!r})"
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false{hint}, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
            raise ValueError(f"{name} must be a whole number{hint}, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number{hint}, got {value!r}")
        return float(value)
    if typing.get_origin(kind) is tuple:
        return _checked_tuple(value, typing.get_args(kind), name, hint)
    if dataclasses.is_dataclass(kind):
        return _checked_config(value, kind, name, default)
    raise TypeError(f"{name}: check_settings does not know field type {kind!r}")


def _checked_tuple(value, args: tuple, name: str, hint: str) -> tuple:
    """``tuple[X, ...]`` (any length) or ``tuple[X, Y]`` (fixed length) from a list or tuple."""
    any_length = len(args) == 2 and args[1] is Ellipsis
    kinds = [args[0]] * len(value) if any_length and isinstance(value, (list, tuple)) else list(args)
    if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
        count = "" if any_length else f"{len(kinds)} "
        raise ValueError(f"{name} must be a list of {count}numbers{hint}, got {value!r}")
    return tuple(_checked(v, k, f"{name}[{i}]", None) for i, (v, k) in enumerate(zip(value, kinds)))


def _checked_config(value, kind: type, name: str, default=None):
    """A nested config: an instance of `kind`, or a dict of its settings over the field's `default` config
    (so ``{"gd": {"iterations": 3}}`` changes only the iterations of the default GD part)."""
    if isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a {kind.__name__} or a dict of its settings, got {value!r}")
    allowed = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"unknown {name} setting(s) {unknown}; allowed: {sorted(allowed)}")
    return dataclasses.replace(default, **value) if isinstance(default, kind) else kind(**value)


def _default(f: dataclasses.Field):
    """A field's default (a factory's product for nested configs), shown in errors as an example of a good
    value and the base a nested config's settings apply to (None if it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return None if f.default_factory is dataclasses.MISSING else f.default_factory()
