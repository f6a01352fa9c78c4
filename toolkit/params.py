"""Typed study parameters: declared once as dataclass fields, parsed and validated once.

A study's configuration is a frozen dataclass whose fields are declared with `param`.
The field name is the CSV column; `--name-with-dashes` is the CLI flag. Tuple-typed
fields are list-valued and take comma-separated values on the command line.
Validation raises ParameterError with one line naming the flag and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Collection
from typing import Any


class ParameterError(ValueError):
    """A parameter value outside its allowed range; the message names the flag."""


def param(
    default: Any,
    help: str,
    *,
    choices: Collection[str] | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A dataclass field with the metadata the CLI, the validator and `toolkit list` use.

    `choices` may be a live collection (e.g. a study's table of models): a name added to
    the table later is allowed from then on."""
    meta = {
        "help": help,
        "choices": choices,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
    }
    if isinstance(default, list | tuple):
        return dataclasses.field(default=tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def redefault(config_type: type, name: str, default: Any) -> Any:
    """The field `name` of `config_type` with another default (help and range kept): how a
    study's config that extends a shared parameter set states its own defaults."""
    base = {f.name: f for f in dataclasses.fields(config_type)}[name]
    meta = dict(base.metadata)
    return param(default, meta.pop("help"), **meta)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def fields(config_type: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for each parameter of a config dataclass."""
    hints = typing.get_type_hints(config_type)
    return [(f, hints[f.name]) for f in dataclasses.fields(config_type)]


def element_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, is_list) of a field annotation such as int or tuple[int, ...]."""
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


def _parse_scalar(name: str, text: str, tp: type) -> Any:
    text = text.strip()
    try:
        if tp is int:
            value = float(text)  # accept 1e3 and 2**k written out; must be integral
            if not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            return float(text)
        if tp is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except (ValueError, OverflowError):
        kind = {int: "an integer", float: "a number", bool: "true or false"}[tp]
        raise ParameterError(f"{flag(name)} must be {kind} (got {text!r})") from None
    return text


def parse(config_type: type, name: str, text: str) -> Any:
    """Parse the command-line text of parameter `name` into its typed value."""
    tp, is_list = element_type(dict((f.name, t) for f, t in fields(config_type))[name])
    if not is_list:
        return _parse_scalar(name, text, tp)
    items = [s for s in text.split(",") if s.strip()]
    if not items:
        raise ParameterError(f"{flag(name)} needs at least one comma-separated value")
    return tuple(_parse_scalar(name, s, tp) for s in items)


def _range_text(meta: dict) -> str:
    low, high = meta["low"], meta["high"]
    parts = []
    if low is not None:
        parts.append(f"{'>' if meta['low_open'] else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if meta['high_open'] else '<='} {high:g}")
    return " and ".join(parts)


def validate(config: Any) -> None:
    """Check every field against its declared type, choices and range."""
    for f, tp in fields(type(config)):
        meta, value = f.metadata, getattr(config, f.name)
        scalar, is_list = element_type(tp)
        values = value if is_list else (value,)
        if is_list and (not isinstance(value, tuple) or not value):
            raise ParameterError(f"{flag(f.name)} needs at least one value")
        if is_list and len(set(values)) != len(values):
            raise ParameterError(f"{flag(f.name)} has repeated values: {value}")
        for v in values:
            if scalar is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, scalar) or (scalar is int and isinstance(v, bool)):
                raise ParameterError(
                    f"{flag(f.name)} must be of type {scalar.__name__} (got {v!r})"
                )
            if meta.get("choices") and v not in meta["choices"]:
                allowed = ", ".join(meta["choices"])
                raise ParameterError(f"{flag(f.name)} must be one of {allowed} (got {v!r})")
            if scalar in (int, float):
                low, high = meta.get("low"), meta.get("high")
                bad = not math.isfinite(v)
                if low is not None:
                    bad |= v <= low if meta["low_open"] else v < low
                if high is not None:
                    bad |= v >= high if meta["high_open"] else v > high
                if bad:
                    kind = "an integer" if scalar is int else "a finite number"
                    rng = _range_text(meta)
                    raise ParameterError(
                        f"{flag(f.name)} must be {kind}{' ' + rng if rng else ''} (got {v!r})"
                    )


def build(config_type: type, overrides: dict[str, Any], check: bool = True) -> Any:
    """The config with `overrides` applied over the field defaults, validated (types,
    choices, ranges), then, with `check`, its own cross-field `check()`."""
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ParameterError(f"unknown parameter(s): {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    config = config_type(**values)
    validate(config)
    if check and hasattr(config, "check"):
        config.check()
    return config


def describe(config_type: type) -> list[dict[str, str]]:
    """One record per parameter (flag, default, allowed values, help) for listings."""
    out = []
    for f, tp in fields(config_type):
        scalar, is_list = element_type(tp)
        default = ",".join(map(str, f.default)) if is_list else str(f.default)
        allowed = ",".join(f.metadata["choices"]) if f.metadata.get("choices") else ""
        allowed = allowed or _range_text(f.metadata)
        out.append(
            {
                "name": f.name,
                "flag": flag(f.name),
                "type": f"list of {scalar.__name__}" if is_list else scalar.__name__,
                "default": default,
                "allowed": allowed,
                "help": f.metadata["help"],
            }
        )
    return out


# ---- Parameters shared by the diffusion studies --------------------------------------------


def training_steps(n: int, batch: int, epochs: float, min_steps: int, max_steps: int) -> int:
    """Adam steps for n training samples: `epochs` passes over the data, at least
    `min_steps`, and at most `max_steps` when that is positive (0: no cap)."""
    steps = max(min_steps, math.ceil(epochs * n / batch))
    return min(steps, max_steps) if max_steps > 0 else steps


@dataclasses.dataclass(frozen=True)
class DiffusionParams:
    """The diffusion process, DSM training budget and sampler, one meaning for every study.

    A study's Config extends this class (and may change a default with `redefault`).
    Training runs training_steps(n, batch, epochs, min_steps, max_steps) Adam steps."""

    t0: float = param(1e-3, "early-stopping time t0", low=0, low_open=True)
    horizon: float = param(8.0, "terminal time T of the forward process", low=0, low_open=True)
    epochs: float = param(32.0, "training: passes over the data (steps = epochs n / batch)", low=0)
    min_steps: int = param(500, "training: Adam steps at least", low=1)
    max_steps: int = param(0, "training: Adam steps at most (0: no cap)", low=0)
    batch: int = param(128, "training: minibatch size", low=1)
    lr: float = param(1e-3, "training: Adam learning rate", low=0, low_open=True)
    sampler_steps: int = param(100, "reverse-SDE steps from T to t0", low=1)

    def check(self) -> None:
        if self.t0 >= self.horizon:
            raise ParameterError(
                f"--t0 must be smaller than --horizon (got t0={self.t0:g}, T={self.horizon:g})"
            )
        if 0 < self.max_steps < self.min_steps:
            raise ParameterError(
                f"--max-steps must be 0 or at least --min-steps (got {self.max_steps} < "
                f"{self.min_steps})"
            )
