"""Roster files: parse and check a CSV of students and guardians, all rows or none."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

COLUMNS = ("student", "student_username", "guardian", "guardian_username", "relationship", "phone")
REQUIRED = ("student", "student_username")
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,80}$")
PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
MAX_ROWS = 5000


@dataclass(frozen=True)
class RosterRow:
    line: int
    student: str
    student_username: str
    guardian: str
    guardian_username: str
    relationship: str
    phone: str


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


def parse_roster(text: str) -> tuple[list[RosterRow], list[Rejection]]:
    """Every row that is fine, and every row that is not with its line number and reason."""
    if "\x00" in text:  # no database text column can hold it
        line = text.count("\n", 0, text.index("\x00")) + 1
        return [], [Rejection(line, "this line contains a NUL character")]
    # newline="": the csv module reads \r\n, \n and a lone \r as line ends itself (and keeps
    # line breaks inside quoted fields).
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        return _parse_rows(reader)
    except csv.Error as exc:
        # A field longer than csv.field_size_limit() (128 KiB), a stray quote in strict
        # places...: the whole file is refused, pointing at the line.
        return [], [Rejection(reader.line_num + 1, f"this line is not readable CSV: {exc}")]


def _parse_rows(reader: csv.DictReader[str]) -> tuple[list[RosterRow], list[Rejection]]:
    rows: list[RosterRow] = []
    bad: list[Rejection] = []
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    if missing or unknown:
        reason = []
        if missing:
            reason.append("missing columns: " + ", ".join(missing))
        if unknown:
            reason.append("unknown columns: " + ", ".join(unknown))
        return [], [Rejection(1, "; ".join(reason) + f" (expected {', '.join(COLUMNS)})")]
    reader.fieldnames = header
    seen_students: dict[str, str] = {}
    seen_links: set[tuple[str, str]] = set()
    for i, raw in enumerate(reader, start=2):
        if i - 1 > MAX_ROWS:
            bad.append(Rejection(i, f"a roster file has at most {MAX_ROWS} rows"))
            break
        if None in raw:
            bad.append(Rejection(i, "more fields than columns"))
            continue
        f = {k: (raw.get(k) or "").strip() for k in COLUMNS}
        reasons = []
        if not f["student"]:
            reasons.append("student name is empty")
        if not USERNAME.match(f["student_username"]):
            reasons.append("student_username must be 3-80 letters, digits or _.@-")
        if f["guardian"] or f["guardian_username"]:
            if not f["guardian"]:
                reasons.append("guardian name is empty")
            if not USERNAME.match(f["guardian_username"]):
                reasons.append("guardian_username must be 3-80 letters, digits or _.@-")
            if f["guardian_username"] and f["guardian_username"] == f["student_username"]:
                reasons.append("a student cannot be their own guardian")
        elif f["relationship"] or f["phone"]:
            reasons.append("relationship or phone given without a guardian")
        if f["phone"] and not PHONE.match(f["phone"]):
            reasons.append("phone is not a phone number")
        if len(f["relationship"]) > 40:
            reasons.append("relationship is longer than 40 characters")
        if len(f["student"]) > 120 or len(f["guardian"]) > 120:
            reasons.append("a name is longer than 120 characters")
        name = seen_students.get(f["student_username"])
        if name is not None and name != f["student"]:
            reasons.append(f"student_username {f['student_username']} has another name above")
        link = (f["guardian_username"], f["student_username"])
        if f["guardian_username"] and link in seen_links:
            reasons.append("this guardian is linked to this student twice")
        if reasons:
            bad.append(Rejection(i, "; ".join(reasons)))
            continue
        seen_students[f["student_username"]] = f["student"]
        if f["guardian_username"]:
            seen_links.add(link)
        rows.append(RosterRow(i, **f))
    if not rows and not bad:
        bad.append(Rejection(1, "the file has no rows"))
    return rows, bad
