"""The schemas take their enums from the domain: one truth for what a field accepts.

Every value the domain names is accepted at the edge and arrives as the domain's member; any
other is refused as ``bad_request`` before an action runs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec
import pytest

from realtime import schemas
from realtime.domain.attachments import VARIANTS, Variant
from realtime.domain.attendance import AttendanceStatus
from realtime.domain.polls import AnswerBy, PollAudience, PollKind
from realtime.domain.records import PERIOD_DAYS, Period
from realtime.errors import HomeroomError

POLL = {"class_id": 1, "client_id": "c1", "kind": "single", "question": "Which?"}
CASES: list[tuple[type[msgspec.Struct], dict[str, Any], str, type[StrEnum]]] = [
    (schemas.PollCreate, POLL, "kind", PollKind),
    (schemas.PollCreate, POLL, "audience", PollAudience),
    (schemas.PollCreate, POLL, "answer_by", AnswerBy),
    (
        schemas.AttendanceCorrect,
        {"session_id": 1, "student_id": 2, "status": "late"},
        "status",
        AttendanceStatus,
    ),
    (schemas.StudentRecordQuery, {"class_id": 1, "student_id": 2}, "period", Period),
    (schemas.ClassRecordQuery, {"class_id": 1}, "period", Period),
    (schemas.UploadLinks, {"ids": ["abcdefgh"]}, "variant", Variant),
]


@pytest.mark.parametrize(("schema", "base", "field", "enum"), CASES)
def test_a_field_accepts_exactly_its_domain_enum(
    schema: type[msgspec.Struct], base: dict[str, Any], field: str, enum: type[StrEnum]
) -> None:
    for member in enum:
        parsed = schemas.parse(schema, {**base, field: member.value})
        assert getattr(parsed, field) is member
    for bad in ("", "bogus", member.value.upper(), 1):
        with pytest.raises(HomeroomError) as refused:
            schemas.parse(schema, {**base, field: bad})
        assert refused.value.code == "bad_request"
        assert refused.value.message.startswith("invalid payload: ")
        assert f"$.{field}" in refused.value.message


def test_the_domain_tables_keyed_by_these_values_cover_them() -> None:
    assert set(PERIOD_DAYS) == {p.value for p in Period}
    assert set(VARIANTS) == {v.value for v in Variant}
