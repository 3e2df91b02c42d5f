"""Command-line flags made from a pydantic-settings class, so a setting is declared once.

Each field becomes `--field-name`: typed from its annotation, its help from its description,
its default (the model's) and its `FARM_*` variable shown in `--help`. A flag that is not given
is not passed to the class, so the environment still applies; a flag that is given wins.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

# Types a value on the command line is converted to before pydantic checks its constraints.
SCALARS: dict[type, str] = {str: "", int: "N", float: "N", Path: "DIR"}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(settings_cls: type[BaseSettings], field: str) -> str:
    return (str(settings_cls.model_config.get("env_prefix", "")) + field).upper()


def add_settings_flags(parser: argparse.ArgumentParser, settings_cls: type[BaseSettings]) -> None:
    """One flag per field of `settings_cls`; every default is None, meaning "not given"."""
    for name, field in settings_cls.model_fields.items():
        parser.add_argument(
            flag_name(name),
            dest=name,
            default=None,
            help=_help(settings_cls, name, field),
            **_kind(name, field),
        )


def parse_settings(
    parser: argparse.ArgumentParser,
    settings_cls: type[SettingsT],
    argv: Sequence[str] | None = None,
) -> SettingsT:
    """Parse `argv` with a parser built by `add_settings_flags`; exit 2 on any bad value."""
    return settings_from_args(parser, settings_cls, parser.parse_args(argv))


def settings_from_args(
    parser: argparse.ArgumentParser, settings_cls: type[SettingsT], args: argparse.Namespace
) -> SettingsT:
    given = {
        name: value
        for name in settings_cls.model_fields
        if (value := getattr(args, name, None)) is not None
    }
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        parser.error(describe_errors(exc, settings_cls, given))
    except SettingsError as exc:  # an environment variable that cannot be parsed at all
        parser.error(str(exc))


def describe_errors(
    exc: ValidationError, settings_cls: type[BaseSettings], given: dict[str, Any]
) -> str:
    """One line naming where each bad value came from: the flag if given, else FARM_*."""
    parts = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"][:1].lower() + error["msg"][1:]
        if field in given:
            parts.append(f"argument {flag_name(field)}: {message} (got {error['input']!r})")
        elif field in settings_cls.model_fields:
            parts.append(f"{env_name(settings_cls, field)}: {message} (got {error['input']!r})")
        else:
            parts.append(message)
    return "; ".join(parts)


def _kind(name: str, field: FieldInfo) -> dict[str, Any]:
    annotation = _without_none(field.annotation)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    metavar = extra.get("metavar")
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return {"type": type(choices[0]), "choices": choices}
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return {
            "action": "append",
            "type": _scalar(name, item),
            "metavar": metavar or _metavar(name, item),
        }
    return {"type": _scalar(name, annotation), "metavar": metavar or _metavar(name, annotation)}


def _without_none(annotation: Any) -> Any:
    """`X | None` -> X: None is a default, never something typed on the command line."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _scalar(name: str, annotation: Any) -> type:
    if annotation not in SCALARS:
        raise TypeError(f"setting {name!r}: no command-line form for {annotation!r}")
    return cast(type, annotation)


def _metavar(name: str, annotation: type) -> str:
    return SCALARS[annotation] or name.upper()


def _help(settings_cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    text = f"{field.description or ''} (default: {_shown(default)}; {env_name(settings_cls, name)})"
    return text.strip().replace("%", "%%")  # argparse %-formats help strings


def _shown(default: Any) -> str:
    if default is None or default == []:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, list):
        return ",".join(str(item) for item in default)
    return str(default)
