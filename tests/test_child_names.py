"""Linking a child must not need the roster's exact string: "赵磊" finds "赵磊 Zhao Lei"."""

from __future__ import annotations

import pytest

from clients.homeroom import RequestError
from realtime.domain.names import matches
from tests.conftest import Server

ROSTER = "赵磊 Zhao Lei"


@pytest.mark.parametrize(
    "typed",
    ["赵磊 Zhao Lei", "赵磊", "赵 磊", " 赵磊 ", "Zhao Lei", "zhao lei", "ZHAOLEI", "Lei Zhao",
     "ＺＨＡＯ　ＬＥＩ", "赵磊　Zhao Lei", "赵磊ZhaoLei"],
)  # fmt: skip
def test_forms_a_parent_types(typed: str) -> None:
    assert matches(typed, ROSTER)


@pytest.mark.parametrize("typed", ["赵", "Zhao", "磊", "赵磊磊", "Zhao Le", "李明", "", "   "])
def test_no_prefix_and_no_similarity(typed: str) -> None:
    assert not matches(typed, ROSTER)


def test_names_without_a_latin_part() -> None:
    assert matches("刘 欣", "刘欣") and matches("ＬＩＵ　ＸＩＮ", "Liu Xin")
    assert not matches("刘", "刘欣")


async def test_a_parent_links_with_the_chinese_part_alone(server: Server) -> None:
    parent = await server.client(None)
    await parent.http(
        "POST",
        "/api/v1/auth/register",
        {
            "username": "zhao_mom",
            "password": "long-enough-pw",
            "display_name": "赵磊妈妈",
            "join_code": server.demo["join_code"],
        },
        auth=False,
    )
    await parent.login("zhao_mom", "long-enough-pw")
    # A guess that is not a whole name finds nothing, and says nothing about who is there.
    with pytest.raises(RequestError) as err:
        await parent.http(
            "POST", "/api/v1/join", {"join_code": server.demo["join_code"], "child_name": "赵"}
        )
    assert err.value.code == "not_found" and "赵磊" not in err.value.message
    asked = await parent.http(
        "POST",
        "/api/v1/join",
        {"join_code": server.demo["join_code"], "child_name": "赵 磊", "relationship": "mother"},
    )
    assert asked["link"]["status"] == "pending"
    teacher = await server.client("li", connect=False)
    links = (await teacher.http("GET", f"/api/v1/classes/{server.class_id}/links"))["links"]
    assert any(x["student_name"] == ROSTER and x["guardian_name"] == "赵磊妈妈" for x in links)


async def test_the_teacher_sees_the_phone_given_and_whether_the_roster_lists_it(
    server: Server,
) -> None:
    join_code = server.demo["join_code"]
    teacher = await server.client("li", connect=False)
    for username, phone in (("wang_aunt", "138-0000-0000"), ("stranger_x", "13999999999")):
        g = await server.client(None)
        await g.http(
            "POST",
            "/api/v1/auth/register",
            {
                "username": username,
                "password": "long-enough-pw",
                "display_name": username,
                "join_code": join_code,
            },
            auth=False,
        )
        await g.login(username, "long-enough-pw")
        await g.http(
            "POST",
            "/api/v1/join",
            {
                "join_code": join_code,
                "child_name": "wang hao",
                "relationship": "aunt",
                "phone": phone,
            },
        )
    links = (await teacher.http("GET", f"/api/v1/classes/{server.class_id}/links"))["links"]
    by_name = {x["guardian_name"]: x for x in links}
    # The demo's guardians of Wang Hao have 13800000000: the roster lists this one.
    assert by_name["wang_aunt"]["phone"] == "138-0000-0000" and by_name["wang_aunt"]["on_roster"]
    assert by_name["stranger_x"]["phone"] == "13999999999"
    assert not by_name["stranger_x"]["on_roster"]
    assert by_name["stranger_x"]["relationship"] == "aunt"
    g = await server.client(None)
    g.token = teacher.token
    with pytest.raises(RequestError) as err:
        await g.http(
            "POST", "/api/v1/join", {"join_code": join_code, "child_name": "x", "phone": "call me"}
        )
    assert err.value.code == "bad_request"
