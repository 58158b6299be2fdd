"""Every stable error code and reason the server can send has a text in both of the web app's
catalogues, so no server English ever reaches a person (clients/web/src/i18n/errors.ts picks
``error.<code>.<reason>``, else ``error.<code>``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from realtime.errors import CODES, REASONS, HomeroomError

I18N = Path(__file__).resolve().parent.parent / "clients" / "web" / "src" / "i18n"
CATALOGUES = {"zh-CN": I18N / "zh-CN.ts", "en": I18N / "en.ts"}
CJK = re.compile(r"[\u4e00-\u9fff]")


def _entries(path: Path) -> dict[str, str]:
    """Key -> the entry's source text (a string literal or an arrow function's body)."""
    entries: dict[str, str] = {}
    for m in re.finditer(r'^\s*"([^"]+)":\s*(.+?),?$', path.read_text("utf-8"), re.MULTILINE):
        entries[m.group(1)] = m.group(2)
    return entries


def _walk() -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = [(code, None) for code in sorted(CODES)]
    out += [(code, r) for code, reasons in sorted(REASONS.items()) for r in sorted(reasons)]
    return out


@pytest.mark.parametrize("lang", sorted(CATALOGUES))
def test_every_code_and_reason_has_a_text(lang: str) -> None:
    entries = _entries(CATALOGUES[lang])
    missing = []
    for code, reason in _walk():
        key = f"error.{code}" if reason is None else f"error.{code}.{reason}"
        text = entries.get(key)
        if text is None:
            missing.append(key)
            continue
        if lang == "zh-CN":
            assert CJK.search(text), f"{key} in zh-CN is not Chinese: {text}"
        if code == "rate_limited" and reason is not None:
            assert "wait" in text, f"{key} must say how long to wait: {text}"
    assert not missing, f"{lang} has no text for {missing}"
    for unit in ("s", "m", "h"):
        assert f"error.wait.{unit}" in entries


def test_every_reason_is_accepted_and_sent_with_its_details() -> None:
    for code, reason in _walk():
        if reason is None:
            continue
        err = HomeroomError(code, "english for developers", reason=reason, retry_after_s=59)
        assert err.to_ack()["error"]["details"] == {"reason": reason, "retry_after_s": 59}
    with pytest.raises(AssertionError):
        HomeroomError("forbidden", "x", reason="no_such_reason")
    assert "details" not in HomeroomError("bad_request", "x").to_ack()["error"]


@pytest.mark.parametrize("lang", sorted(CATALOGUES))
def test_the_clients_own_errors_have_texts_too(lang: str) -> None:
    """The app's own codes (no network, no answer) and a browser's refusals of a camera,
    microphone or screen are said in the person's language too, never in the browser's English."""
    source = (I18N.parent / "api" / "errors.ts").read_text("utf-8")
    found = re.search(r"CLIENT_CODES = \[([^\]]*)\]", source)
    assert found is not None
    codes = re.findall(r'"([a-z_]+)"', found.group(1))
    assert codes, "no client codes found"
    entries = _entries(CATALOGUES[lang])
    wanted = [f"error.{c}" for c in codes] + [
        f"device.{n}" for n in ("NotAllowedError", "NotFoundError", "NotReadableError", "other")
    ]
    missing = [k for k in wanted if k not in entries]
    assert not missing, f"{lang} has no text for {missing}"
    if lang == "zh-CN":
        assert all(CJK.search(entries[k]) for k in wanted)
