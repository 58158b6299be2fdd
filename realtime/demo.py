"""The demo school: one class with teachers, students and guardians to try everything with."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from realtime.actions.accounts import create_user
from realtime.actions.roster import add_member, create_class, link_guardian
from realtime.auth import hash_password
from realtime.domain.roles import Role
from realtime.store.db import Store, inserted_id
from realtime.store.schema import classes, schools, users

DEMO_PASSWORD = "demo1234"

TEACHERS = [
    ("li", "李老师 Ms. Li", Role.HEAD_TEACHER),
    ("chen", "陈老师 Mr. Chen", Role.TEACHER),
]
STUDENTS = [
    ("wanghao", "王浩 Wang Hao"),
    ("liming", "李明 Li Ming"),
    ("zhangwei", "张伟 Zhang Wei"),
    ("liuyang", "刘洋 Liu Yang"),
    ("liuxin", "刘欣 Liu Xin"),
    ("zhaolei", "赵磊 Zhao Lei"),  # no guardian yet
]
# (username, name, relationship, children)
GUARDIANS = [
    ("wang_mom", "王浩妈妈 Wang Hao's mother", "mother", ["wanghao"]),
    ("wang_dad", "王浩爸爸 Wang Hao's father", "father", ["wanghao"]),
    ("li_mom", "李明妈妈 Li Ming's mother", "mother", ["liming"]),
    ("li_dad", "李明爸爸 Li Ming's father", "father", ["liming"]),
    ("zhang_mom", "张伟妈妈 Zhang Wei's mother", "mother", ["zhangwei"]),
    ("zhang_grandpa", "张伟爷爷 Zhang Wei's grandfather", "grandfather", ["zhangwei"]),
    ("liu_mom", "刘洋刘欣妈妈 Liu Yang and Liu Xin's mother", "mother", ["liuyang", "liuxin"]),
    ("liu_dad", "刘洋爸爸 Liu Yang's father", "father", ["liuyang"]),
]


# Two village classrooms to link into a dual-teacher lesson with the demo class:
# (class name, local teacher, students)
CLASSROOMS = [
    (
        "山村小学五年级 / Village School A, Grade 5",
        ("wu", "吴老师 Ms. Wu"),
        [
            ("xiaohong", "小红 Xiao Hong"),
            ("xiaogang", "小刚 Xiao Gang"),
            ("xiaoli", "小丽 Xiao Li"),
        ],
    ),
    (
        "河边小学五年级 / Riverside School, Grade 5",
        ("zhou", "周老师 Mr. Zhou"),
        [
            ("xiaoming", "小明 Xiao Ming"),
            ("xiaoyu", "小雨 Xiao Yu"),
            ("xiaofang", "小芳 Xiao Fang"),
        ],
    ),
]


async def is_empty(store: Store) -> bool:
    async with store.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(users))).scalar_one()) == 0


async def seed(store: Store) -> dict[str, Any]:
    """Create the demo school. Call only on an empty database."""
    now = time.time()
    # One hash for the one demo password: seeding stays fast (argon2 is slow on purpose).
    pw = hash_password(DEMO_PASSWORD)
    ids: dict[str, int] = {}
    async with store.transaction() as conn:
        school = inserted_id(
            await conn.execute(schools.insert().values(name="示范小学 Demo Primary School"))
        )
        class_id = await create_class(conn, school, "五年级二班 / Grade 5 Class 2")
        admin = await create_user(
            conn,
            school,
            "admin",
            "管理员 IT Admin",
            None,
            school_admin=True,
            password_hash=pw,
            now=now,
        )
        ids["admin"] = admin
        for username, name, role in TEACHERS:
            ids[username] = await create_user(
                conn, school, username, name, None, password_hash=pw, now=now
            )
            await add_member(conn, class_id, ids[username], role)
        for username, name in STUDENTS:
            ids[username] = await create_user(
                conn, school, username, name, None, password_hash=pw, now=now
            )
            await add_member(conn, class_id, ids[username], Role.STUDENT)
        for username, name, relationship, children in GUARDIANS:
            ids[username] = await create_user(
                conn, school, username, name, None, password_hash=pw, phone="13800000000", now=now
            )
            for child in children:
                await link_guardian(
                    conn,
                    class_id,
                    ids[username],
                    ids[child],
                    relationship,
                    status="approved",
                    by=ids["li"],
                    now=now,
                )
        linked = []
        for class_name, (teacher, teacher_name), kids in CLASSROOMS:
            cid = await create_class(conn, school, class_name)
            linked.append(cid)
            ids[teacher] = await create_user(
                conn, school, teacher, teacher_name, None, password_hash=pw, now=now
            )
            await add_member(conn, cid, ids[teacher], Role.TEACHER)
            for username, name in kids:
                ids[username] = await create_user(
                    conn, school, username, name, None, password_hash=pw, now=now
                )
                await add_member(conn, cid, ids[username], Role.STUDENT)
        join_code = (
            await conn.execute(select(classes.c.join_code).where(classes.c.id == class_id))
        ).scalar_one()
    return {
        "class_id": class_id,
        "join_code": join_code,
        "users": ids,
        "linked_class_ids": linked,
    }


def sign_in_help(base_url: str, join_code: str | None = None) -> str:
    lines = [
        f"Homeroom demo school is ready. Open {base_url}/ and sign in (password: {DEMO_PASSWORD}):",
        "  head teacher     li         (李老师 Ms. Li)",
        "  subject teacher  chen       (陈老师 Mr. Chen)",
        "  student          wanghao    (王浩 Wang Hao)",
        "  guardian         wang_mom   (王浩妈妈 Wang Hao's mother)",
        "  school admin     admin",
        "  local teachers   wu, zhou   (two village classrooms for a dual-teacher lesson)",
    ]
    if join_code:
        lines.append(f"  class join code for new guardians: {join_code}")
    return "\n".join(lines)
