"""The training settings as typer options: one ``--kebab-name`` per setting of
:meth:`citysplat.splat.config.TrainConfig.specs`, with its default, help and help panel.

The options are made from the settings' declarations, so a new setting appears on the command
line (and in Dagster) without being declared again. Values are checked by
:meth:`TrainConfig.from_settings`, as everywhere else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from citysplat.splat.config import TrainConfig
from citysplat.splat.settings import SettingSpec

F = TypeVar("F", bound=Callable[..., Any])
SETTINGS_PARAMETER = "settings"


def option_name(spec: SettingSpec) -> str:
    """The command-line spelling of a setting: ``max_side`` -> ``--max-side``; a bool gets
    ``--sky/--no-sky``."""
    name = "--" + spec.name.replace("_", "-")
    return f"{name}/--no-{name[2:]}" if spec.kind is bool else name


def _parameter(spec: SettingSpec) -> inspect.Parameter:
    import typer

    annotation = spec.kind if spec.default is not None else spec.kind | None
    help_text = spec.help  # no square brackets: typer reads them as rich markup
    if spec.kind is not bool:
        help_text += f" Allowed: {spec.allowed.describe()}."
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(spec.default, option_name(spec), help=help_text,
                             rich_help_panel=f"Training: {spec.group}",
                             show_default=spec.default is not None),
        annotation=annotation,
    )


def train_options(skip: Collection[str] = ()) -> Callable[[F], F]:
    """Decorate a typer command with one option per training setting (but those in ``skip``,
    which the command spells itself). The command takes a keyword ``settings`` and receives
    them there as ``{name: value}`` (None: not given), for
    :meth:`TrainConfig.from_settings`."""
    specs = [s for s in TrainConfig.specs() if s.name not in set(skip)]

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        if SETTINGS_PARAMETER not in signature.parameters:
            raise TypeError(f"{command.__name__} takes no '{SETTINGS_PARAMETER}' parameter")
        own = [p for p in signature.parameters.values() if p.name != SETTINGS_PARAMETER]
        clash = {p.name for p in own} & {s.name for s in specs}
        if clash:
            raise TypeError(f"{command.__name__}: {sorted(clash)} are training settings; "
                            "skip them or rename the parameters")
        names = [s.name for s in specs]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            settings = {name: kwargs.pop(name) for name in names if name in kwargs}
            return command(*args, **kwargs, **{SETTINGS_PARAMETER: settings})

        parameters = [*own, *(_parameter(s) for s in specs)]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate
