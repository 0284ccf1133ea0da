"""Settings as text: typed values parsed from strings (``--set``, ``--env-kwargs``, files),
type names for messages, and the settings' docstrings rendered for a terminal or the
README."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
import types
import typing
from typing import Any, Literal

from trpo.config import Config, ConfigError, field_types


def unknown_message(unknown: list[str]) -> str:
    import difflib

    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, Config.field_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        parts.append(f"unknown setting '{key}'{hint}")
    return "; ".join(parts) + ". Run `trpo train --help-config` to list the settings."


_TRUE = {"1", "true", "yes", "on"}


_FALSE = {"0", "false", "no", "off"}


def parse_value(key: str, text: str, hint: Any) -> Any:
    """Parse the string ``text`` as the type ``hint`` of setting ``key``."""
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError
        if hint is int:
            return int(text.replace("_", ""))
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin is Literal:
            if text in typing.get_args(hint):
                return text
            raise ValueError
        if origin is tuple:
            items = [s for s in text.replace("(", "").replace(")", "").split(",") if s.strip()]
            item_type = typing.get_args(hint)[0]
            return tuple(item_type(s.strip()) for s in items)
        if origin is dict:
            return dict(parse_key_values([s for s in text.split(",") if s.strip()]))
    except ValueError:
        pass
    raise ConfigError(f"setting '{key}' expects {type_name(hint)}, got {text!r}")


def check_type(key: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    ok = True
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is str or origin is Literal:
        ok = isinstance(value, str)
    elif origin is tuple:
        ok = isinstance(value, list | tuple)
    elif origin is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(f"setting '{key}' expects {type_name(hint)}, got {value!r}")


def type_name(hint: Any) -> str:
    """How a type reads in messages and in the settings table."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(typing.get_args(hint))
    if origin is tuple and typing.get_args(hint)[0] is str:
        return "comma-separated names"
    if origin is tuple:
        return "comma-separated integers, e.g. 64,64"
    if origin is dict:
        return "key=value pairs"
    if isinstance(hint, type):
        return {"bool": "true/false", "int": "an integer", "float": "a number"}.get(
            hint.__name__, hint.__name__
        )
    if isinstance(hint, types.UnionType):
        return str(hint)
    return str(hint)


def parse_key_values(items: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings; values become int, float (``nan``, ``inf`` and
    ``-inf`` too), bool, None or stay strings."""
    pairs = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {item!r}")
        pairs.append((key.strip(), _literal(raw.strip())))
    return pairs


def _literal(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        lowered = raw.lower()
        if lowered in _NONFINITE:  # floats, so an env is probed with what the user meant
            return _NONFINITE[lowered]
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return raw


def field_docs() -> dict[str, str]:
    """The docstring written under each Config field (for --help-config and the README)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Config))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def shown(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def config_text(width: int | None = None) -> str:
    """Every setting as a block for a terminal: ``name = default  (type)`` and its
    meaning wrapped to ``width`` (default: the terminal's, at most 100 columns)."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    docs = field_docs()
    hints = field_types()
    blocks = []
    for name, default in Config().to_dict().items():
        value = shown(default) if default not in ((), {}, "") else "(empty)"
        head = f"{name} = {value}  ({type_name(hints[name])})"
        body = textwrap.fill(
            docs.get(name, ""), max(width, 40), initial_indent="    ", subsequent_indent="    "
        )
        head = "\n".join(textwrap.wrap(head, max(width, 40), subsequent_indent="    "))
        blocks.append(f"{head}\n{body}" if body else head)
    footer = "Set any of them with --set NAME=VALUE or in a --config file (TOML or JSON)."
    return "\n\n".join(blocks) + "\n\n" + textwrap.fill(footer, max(width, 40))


def config_table() -> str:
    docs = field_docs()
    defaults = Config().to_dict()
    hints = field_types()
    lines = ["| setting | default | type | meaning |", "|---|---|---|---|"]
    for name, default in defaults.items():
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        lines.append(f"| `{name}` | `{shown}` | {type_name(hints[name])} | {docs.get(name, '')} |")
    return "\n".join(lines)


_NONFINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
