"""GET /api/v1/classes: the classes of my school, for a teacher linking classrooms into a
dual-teacher lesson. Teachers and school admins see every class of their own school (never
another school's), with its teachers; students and guardians are refused.
"""

from __future__ import annotations

import time

import pytest

from clients.homeroom import RequestError
from realtime.actions.accounts import create_user
from realtime.actions.roster import add_member, create_class
from realtime.domain.roles import Role
from realtime.store.db import inserted_id
from realtime.store.schema import schools
from realtime.transport.rest import HUB
from tests.conftest import Server

pytestmark = pytest.mark.timeout(60)


async def test_teachers_see_their_schools_classes(server: Server) -> None:
    # Another school with a class and a teacher: never listed to the demo school.
    async with server.app[HUB].store.transaction() as conn:
        other = inserted_id(await conn.execute(schools.insert().values(name="Other School")))
        other_class = await create_class(conn, other, "Elsewhere Grade 5")
        t = await create_user(
            conn, other, "elsewhere_t", "Elsewhere T", "password123", now=time.time()
        )
        await add_member(conn, other_class, t, Role.TEACHER)

    village_a, village_b = server.demo["linked_class_ids"]
    li = await server.client("li", connect=False)
    listed = (await li.http("GET", "/api/v1/classes"))["classes"]
    assert [c["id"] for c in listed] == [server.class_id, village_a, village_b]
    by_id = {c["id"]: c for c in listed}
    assert by_id[server.class_id]["mine"] is True
    assert by_id[village_a]["mine"] is False
    assert by_id[server.class_id]["teachers"] == ["李老师 Ms. Li", "陈老师 Mr. Chen"]
    assert by_id[village_a]["teachers"] == ["吴老师 Ms. Wu"]
    assert by_id[village_b]["name"].startswith("河边小学")

    # A village teacher sees the same school, with their own class marked.
    wu = await server.client("wu", connect=False)
    mine = {c["id"] for c in (await wu.http("GET", "/api/v1/classes"))["classes"] if c["mine"]}
    assert mine == {village_a}
    elsewhere = await server.client(connect=False)
    await elsewhere.login("elsewhere_t", "password123")
    assert [c["id"] for c in (await elsewhere.http("GET", "/api/v1/classes"))["classes"]] == [
        other_class
    ]

    # Students and guardians are refused.
    for username in ("wanghao", "wang_mom", "xiaohong"):
        c = await server.client(username, connect=False)
        with pytest.raises(RequestError) as err:
            await c.http("GET", "/api/v1/classes")
        assert err.value.code == "forbidden", username
