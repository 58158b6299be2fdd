"""Matching a child's name as a parent types it against the roster's, without I/O.

Rosters hold names like "赵磊 Zhao Lei". A parent types "赵磊", "赵 磊", "ＺＨＡＯ ＬＥＩ" (a
full-width input method), "zhao lei" or "Lei Zhao". Each counts as the same name: NFKC folds
full-width forms, case and spacing are ignored, and the Chinese part or the Latin part alone is
enough. It is an exact match of one of these forms, never a prefix or a similarity, so typing
a guess reveals nothing about the class list beyond "found" or "not found"."""

from __future__ import annotations

import re
import unicodedata

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef·•]")
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*|\d+")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _latin_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(_CJK.sub(" ", text)) if w]


def forms(display_name: str) -> set[str]:
    """Every form of a roster name that a typed name may equal (spaces removed)."""
    folded = _fold(display_name)
    out = {re.sub(r"\s+", "", folded)}
    cjk = "".join(_CJK.findall(folded))
    if cjk:
        out.add(cjk)
    words = _latin_words(folded)
    if words:
        out.add("".join(words))
        out.add("".join(reversed(words)))  # "Lei Zhao" for "Zhao Lei"
    out.discard("")
    return out


def typed_form(child_name: str) -> str:
    """What a parent typed, in the form ``forms`` gives."""
    return re.sub(r"\s+", "", _fold(child_name))


def matches(child_name: str, display_name: str) -> bool:
    typed = typed_form(child_name)
    return bool(typed) and typed in forms(display_name)
