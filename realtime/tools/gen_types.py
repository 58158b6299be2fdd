"""The web app's protocol types, generated from the msgspec structs of ``realtime/views.py``.

    python -m realtime.tools.gen_types > clients/web/src/api/types.ts

``tests/test_views.py`` fails when the committed file differs from this output.
"""

from __future__ import annotations

import sys
import typing
from typing import Any

import msgspec.inspect as mi

from realtime import views

HEADER = """\
// GENERATED from realtime/views.py by `python -m realtime.tools.gen_types`: do not edit.
// The Homeroom protocol as the browser sees it (acks, REST answers, stream events).
"""


def _literal(values: tuple[Any, ...], aliases: dict[frozenset[Any], str]) -> str:
    name = aliases.get(frozenset(values))
    if name is not None:
        return name
    return " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values)


def ts_type(t: mi.Type, aliases: dict[frozenset[Any], str]) -> str:
    """The TypeScript for one msgspec type."""
    if isinstance(t, mi.IntType | mi.FloatType):
        return "number"
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.AnyType):
        return "any"
    if isinstance(t, mi.LiteralType):
        return _literal(t.values, aliases)
    if isinstance(t, mi.StructType):
        return t.cls.__name__
    if isinstance(t, mi.ListType):
        item = ts_type(t.item_type, aliases)
        return f"({item})[]" if " " in item else f"{item}[]"
    if isinstance(t, mi.DictType):
        return f"Record<{ts_type(t.key_type, aliases)}, {ts_type(t.value_type, aliases)}>"
    if isinstance(t, mi.UnionType):
        return " | ".join(ts_type(member, aliases) for member in t.types)
    raise TypeError(f"no TypeScript for {t!r}")


def _interface(cls: type[views.View], aliases: dict[frozenset[Any], str]) -> str:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    base = cls.__mro__[1]
    inherited: set[str] = set()
    extends = ""
    if base is not views.View:
        inherited = set(getattr(base, "__struct_fields__", ()))
        extends = f" extends {base.__name__}"
    overrides = cls.ts
    lines = []
    if cls.__doc__ and cls.__doc__ is not views.View.__doc__:
        doc = " ".join(cls.__doc__.split())
        lines.append(f"/** {doc} */")
    lines.append(f"export interface {cls.__name__}{overrides.get('<>', '')}{extends} {{")
    for field in info.fields:
        if field.name in inherited:
            continue
        optional = "" if field.required else "?"
        kind = overrides.get(field.name) or ts_type(field.type, aliases)
        lines.append(f"  {field.encode_name}{optional}: {kind};")
    lines.append("}")
    return "\n".join(lines)


def generate() -> str:
    aliases: dict[frozenset[Any], str] = {}
    parts = [HEADER]
    for name, (alias, comment) in views.ALIASES.items():
        values = typing.get_args(alias)
        aliases[frozenset(values)] = name
        union = " | ".join(f'"{v}"' for v in values)
        doc = f"/** {comment} */\n" if comment else ""
        parts.append(f"{doc}export type {name} = {union};")
    for cls in views.VIEWS:
        parts.append(_interface(cls, aliases))
    return "\n\n".join(parts) + "\n"


def main() -> int:
    sys.stdout.write(generate())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
