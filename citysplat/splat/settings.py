"""Declaring a training setting once: its default, a one-line help and its allowed values.

A setting is a dataclass field made with :func:`setting`. Everything else about it is derived
from that one declaration: the check of a value (:func:`problems_of`, one line naming the
setting and what it allows), the command-line option (:mod:`.cli_options`) and the Dagster
config field (``assets/splats.py``), both made from the :class:`SettingSpec` list of
:func:`specs_of` (flattened for the whole config by ``TrainConfig.specs``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

SettingKind = type  # int, float, bool or str


class TrainConfigError(ValueError):
    """Settings with values they do not allow. ``problems`` holds one line per setting, naming
    it and what it allows; the message is those lines joined with "; " (one line)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Allowed:
    """What values a setting accepts (``None``: no bound)."""

    at_least: float | None = None
    above: float | None = None  # strictly greater
    at_most: float | None = None
    below: float | None = None  # strictly less
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole string must match
    pattern_text: str = ""  # how the pattern reads in a message

    def describe(self) -> str:
        """The allowed values in words, e.g. ``at least 1`` or ``between 0 and 1``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern:
            return self.pattern_text or f"matching {self.pattern}"
        low = (f"at least {_num(self.at_least)}" if self.at_least is not None
               else f"above {_num(self.above)}" if self.above is not None else "")
        high = (f"at most {_num(self.at_most)}" if self.at_most is not None
                else f"below {_num(self.below)}" if self.below is not None else "")
        if self.at_least is not None and self.at_most is not None:
            return f"between {_num(self.at_least)} and {_num(self.at_most)}"
        return " and ".join(part for part in (low, high) if part) or "any value"

    def admits(self, value: Any) -> bool:
        """Whether ``value`` (already of the setting's kind) is allowed."""
        if self.choices:
            return value in self.choices
        if self.pattern:
            return re.fullmatch(self.pattern, value) is not None
        return not ((self.at_least is not None and value < self.at_least)
                    or (self.above is not None and value <= self.above)
                    or (self.at_most is not None and value > self.at_most)
                    or (self.below is not None and value >= self.below))


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def setting(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002
            default_factory: Any = dataclasses.MISSING, group: str = "training",
            **allowed: Any) -> Any:
    """A dataclass field that is a training setting: ``help`` is its one-line description,
    ``allowed`` the keywords of :class:`Allowed` (``at_least=1``, ``choices=(...)``...),
    ``group`` where its command-line option is listed."""
    metadata = {"help": help, "allowed": Allowed(**allowed), "group": group}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SettingSpec:
    """One setting as the command line and Dagster see it: a flat name and a plain kind."""

    name: str
    kind: SettingKind  # int, float, bool or str
    default: Any  # None where it is derived from other settings, or set per strategy
    help: str
    group: str
    allowed: Allowed
    optional: bool  # None is a value (derived from other settings)

    def problem(self, value: Any) -> str | None:
        """One line saying why ``value`` is not a valid value of this setting, or None."""
        name, allowed = self.name, self.allowed
        if value is None:
            return None if self.optional else f"{name} must be set ({allowed.describe()})"
        if self.kind is bool:
            ok_type = isinstance(value, bool)
        elif self.kind is int:
            ok_type = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok_type = isinstance(value, str)
        if not ok_type:
            word = {bool: "true or false", int: "a whole number", float: "a number",
                    str: "a string"}[self.kind]
            return f"{name} must be {word} (got {value!r})"
        if self.kind is not bool and not allowed.admits(value):
            return f"{name} must be {allowed.describe()} (got {value!r})"
        return None


def _kind_of(annotation: Any) -> tuple[SettingKind, bool]:
    """(int/float/bool/str, whether None is allowed) of a field's resolved annotation."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"a setting is one plain kind, not {annotation}")
        annotation = args[0]
    if get_origin(annotation) is Literal:
        return str, optional
    if annotation in (int, float, bool, str):
        return annotation, optional
    raise TypeError(f"a setting is int, float, bool or str, not {annotation}")


def specs_of(cls: type, group: str | None = None) -> list[SettingSpec]:
    """The :class:`SettingSpec` of each setting of dataclass ``cls``, in declaration order
    (``group``: list them all under this group instead of their own)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "allowed" not in f.metadata:
            continue
        kind, optional = _kind_of(hints[f.name])
        default = None if f.default is dataclasses.MISSING else f.default
        out.append(SettingSpec(f.name, kind, default, f.metadata["help"],
                               group or f.metadata["group"], f.metadata["allowed"], optional))
    return out


def problems_of(cls: type, values: Mapping[str, Any]) -> list[str]:
    """One line per setting of dataclass ``cls`` whose value in ``values`` is not allowed
    (settings missing from ``values`` are not checked)."""
    return [line for spec in specs_of(cls) if spec.name in values
            if (line := spec.problem(values[spec.name]))]
