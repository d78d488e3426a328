"""Config errors as users read them: one short line per key, naming the key, the bad value and what
is allowed, with a did-you-mean for near misses.

    pydantic's ValidationError  ->  lines(error, StackConfig, project=PROJECT)
        config consul-mesh-migration:consul.serverReplicas: got 2; must be odd (1, 3, 5 or 7) so ...
        config consul-mesh-migration:cluster.instanceTypes[0]: got 't3.Large'; must be an EC2 instance type ...
    unknown top-level keys      ->  unknown_keys(raw, unknown, allowed, project=PROJECT)
        config consul-mesh-migration:phse: unknown key (did you mean 'phase'?); allowed: ...

What a pattern means comes from the field itself (`Field(pattern=..., description=...)` in
program/config.py), so a new constrained key needs no entry here. Nothing here knows the config's
keys: it reads them from the models.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import ipaddress
import json
import re
import shlex
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


def lines(error: ValidationError, root: type[BaseModel], *, project: str) -> str:
    """One line per error of `root`'s validation."""
    return "\n".join(_describe(err, root, project) for err in error.errors())


def unknown_keys(raw: Mapping[str, Any], unknown: list[str], allowed: list[str], *, project: str) -> str:
    """One line per unknown top-level key: set without --path, or a typo."""
    return "\n".join(
        _without_path(k, raw[k], allowed, project) or _unknown_key(k, allowed, "", project) for k in unknown
    )


def _without_path(key: str, value: Any, allowed: list[str], project: str) -> str | None:
    """A nested key set without --path arrives as a top-level key with a dot (or [) in its name."""
    top = re.split(r"[.\[]", key, maxsplit=1)[0]
    if top == key or top not in allowed:
        return None
    shown = value if isinstance(value, str) else json.dumps(value)
    return (
        f"config {project}:{key}: set without --path, so it is a top-level key named {key!r}; run "
        f"`pulumi config rm {shlex.quote(key)}` and `pulumi config set --path {shlex.quote(key)} {shlex.quote(shown)}`"
    )


def _did_you_mean(value: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for a wrong case (STRICT) or a near miss (permisive); '' otherwise."""
    same = [c for c in choices if c.lower() == value.lower()]
    close = same or difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(key: str, allowed: list[str], prefix: str, project: str) -> str:
    hint = _did_you_mean(key, allowed)
    return f"config {project}:{prefix}{key}: unknown key{hint}; allowed: {', '.join(sorted(allowed))}"


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the last element of `loc` (None for a list or a scalar)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = _field(model, part)
        if field is None:
            return None
        annotation = field.annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)), annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field(model: Any, key: str) -> Any:
    """The field a config key names: by its camelCase alias or its Python name."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return next((f for n, f in model.model_fields.items() if key in (n, f.alias)), None)


def _pattern_of(root: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    field = _field(_model_at(root, loc), str(loc[-1])) if loc and isinstance(loc[-1], str) else None
    return next((m.pattern for m in getattr(field, "metadata", ()) if getattr(m, "pattern", None)), None)


def _as_string(value: float, pattern: str | None) -> str:
    """A YAML number as the string it was meant to be: 1.3 was written 1.30 when a minor needs two digits."""
    candidates = [str(value), *([f"{value:.2f}"] if isinstance(value, float) else [])]
    return next((c for c in candidates if pattern and re.fullmatch(pattern, c)), candidates[0])


def _describe(err: Any, root: type[BaseModel], project: str) -> str:
    loc = tuple(err["loc"])
    # A model validator reports on its whole object; its message names the keys and values itself.
    if err["type"] == "value_error" and isinstance(err.get("input"), dict):
        where = f"{project}:{_dotted(loc)}" if loc else project
        return f"config {where}: {_msg(err, root)}"
    key = _dotted(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(root, loc)
        allowed = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
        parent = _dotted(loc[:-1])
        return _unknown_key(str(loc[-1]), allowed, f"{parent}." if parent else "", project)
    if err["type"] == "model_type":
        model = _model_at(root, (*loc, ""))
        keys = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items())) if model else ""
        return f"config {project}:{key}: got {err.get('input')!r}; must be an object with keys among: {keys}"
    value = err.get("input")
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    if err["type"] == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads an unquoted 1.35 as a number (and 1.30 as 1.3).
        return f'config {project}:{key}: got {shown}, a number; quote it: "{_as_string(value, _pattern_of(root, loc))}"'
    text = f"config {project}:{key}: got {shown}; {_msg(err, root)}"
    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    if choices and isinstance(value, str):
        text += _did_you_mean(value, choices)
    elif err["type"] == "string_pattern_mismatch" and isinstance(value, str):
        if value != value.lower() and re.fullmatch(err["ctx"]["pattern"], value.lower()):
            text += f" (did you mean {value.lower()!r}?)"
    elif err["type"] == "ip_v4_network" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            text += f" (host bits set; did you mean '{ipaddress.IPv4Network(value, strict=False)}'?)"
    return text


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _msg(err: Any, root: type[BaseModel]) -> str:
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    expected = (err.get("ctx") or {}).get("expected")
    if expected and err["type"] in ("literal_error", "enum"):
        return f"allowed: {expected}"
    if err["type"] == "string_pattern_mismatch":
        pattern = err["ctx"]["pattern"]
        return f"must be {_pattern_names(root).get(pattern, 'of the form ' + pattern)}"
    return msg[0].lower() + msg[1:] if msg else msg


@functools.cache
def _pattern_names(root: type[BaseModel]) -> dict[str, str]:
    """pattern -> description, from every constrained field of `root` and the models under it."""
    return {pattern: text for pattern, text in _patterns(root, set()) if text}


def _patterns(model: type[BaseModel], seen: set[type]) -> Iterator[tuple[str, str | None]]:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        yield from _info_patterns(field)
        yield from _annotation_patterns(field.annotation, seen)


def _annotation_patterns(annotation: Any, seen: set[type]) -> Iterator[tuple[str, str | None]]:
    """Patterns in an annotation: Annotated[str, Field(...)] items of lists, and nested models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _patterns(annotation, seen)
        return
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in args[1:]:
            if isinstance(meta, FieldInfo):
                yield from _info_patterns(meta)
        args = args[:1]
    for arg in args:
        yield from _annotation_patterns(arg, seen)


def _info_patterns(info: FieldInfo) -> Iterator[tuple[str, str | None]]:
    for meta in info.metadata:
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            yield pattern, info.description
