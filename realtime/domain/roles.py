"""Roles a person can hold in a class, and what a person is to one class."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    HEAD_TEACHER = "head_teacher"
    TEACHER = "teacher"
    ASSISTANT_TEACHER = "assistant_teacher"
    STUDENT = "student"
    GUARDIAN = "guardian"


STAFF_ROLES = frozenset({Role.HEAD_TEACHER, Role.TEACHER, Role.ASSISTANT_TEACHER})
# Teachers who may publish notices and approve guardian links; assistants help in class only.
TEACHING_ROLES = frozenset({Role.HEAD_TEACHER, Role.TEACHER})


@dataclass(frozen=True)
class ClassAccess:
    """What one person is to one class: roles there and, for a guardian, approved children."""

    user_id: int
    class_id: int
    roles: frozenset[Role] = frozenset()
    children: frozenset[int] = field(default_factory=frozenset)
    school_admin: bool = False

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & STAFF_ROLES)

    @property
    def is_teacher(self) -> bool:
        return bool(self.roles & TEACHING_ROLES)

    @property
    def is_student(self) -> bool:
        return Role.STUDENT in self.roles

    @property
    def is_guardian(self) -> bool:
        # Only a guardian with at least one approved child in the class counts.
        return Role.GUARDIAN in self.roles and bool(self.children)

    @property
    def is_member(self) -> bool:
        return self.is_staff or self.is_student or self.is_guardian
