"""The fuzzing engine: requests generated from the protocol's own schemas, mutated the way an
attacker mutates them, sent by every role to a real server; each answer is checked.

Shared by the bounded run in the test suite (tests/test_fuzz.py) and the long run
(bench/fuzz.py). What is checked for every request:

- it is answered (a Socket.IO ack within 10 s; an HTTP response), never with ``internal`` / 500,
  and a refusal carries one of the stable codes (realtime/errors.py);
- a refused request changed nothing: every table's row count and largest id and every stream's
  position (tests/hostile.py ``snapshot``) are the same before and after.

Payloads come from the msgspec schemas of ROUTES, the live-session routes and the REST table
(``msgspec.inspect``), ids biased to small numbers so they name real classes, messages and
notices of the demo school; then, most of the time, one hostile mutation: a field replaced by a
huge or negative integer, NaN, Infinity, a lone surrogate, NUL, whitespace, a wrong type, deep
nesting or a long string; an unknown field added; a required field dropped; or a payload that is
not an object at all. Hostile JSON is written by the standard library (tests/hostile.py).

The server and the clients run on an event loop in a thread of their own, so Hypothesis drives
plain synchronous tests and shrinks what it finds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from clients.homeroom import HomeroomClient
from realtime import schemas
from realtime.app import GATEWAY
from realtime.errors import CODES
from realtime.transport import rest
from realtime.transport.socket import ROUTES
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.hostile import NO_ACK, code_of, http, raw_call, snapshot

T = TypeVar("T")

# Every kind of person: a teacher of the class, one of its students, a guardian of one of its
# students, and an outsider (a teacher of another school's classroom, the rogue-teacher case).
ROLES = {"teacher": "li", "student": "wanghao", "guardian": "wang_mom", "outsider": "wu"}
DEEP_MARK = "\x01deep\x01"
DEEP_LEVELS = 5000


@dataclass(frozen=True)
class Finding:
    where: str  # "socket chat.send" / "REST GET /api/v1/me"
    role: str
    what: str  # "internal", "no ack", "changed state on refusal: bad_request", "status 500"
    request: str

    def key(self) -> tuple[str, str]:
        return (self.where, self.what.split(":")[0])


# --- strategies from the schemas ---------------------------------------------------------------

SMALL_IDS = st.integers(min_value=1, max_value=40)


def _int_strategy(t: mi.IntType) -> st.SearchStrategy[int]:
    lo = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
    hi = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
    small = SMALL_IDS.filter(lambda v: (lo is None or v >= lo) and (hi is None or v <= hi))
    return st.one_of(small, st.integers(min_value=lo, max_value=hi))


def _str_strategy(t: mi.StrType, name: str, streams: list[str]) -> st.SearchStrategy[str]:
    lo, hi = t.min_length or 0, min(t.max_length or 60, 60)
    if t.pattern and t.pattern.startswith("^") and t.pattern.endswith("$"):
        return st.from_regex(t.pattern, fullmatch=True)
    text = st.text(min_size=lo, max_size=max(lo, hi))
    if t.pattern:
        text = text.filter(lambda s: s.strip() != "")
    if name in ("stream", "cursors") and streams:
        return st.one_of(st.sampled_from(streams), text)
    if name == "sdp":
        return st.one_of(st.just("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"), text)
    return text


def strategy(t: mi.Type, name: str = "", streams: list[str] | None = None) -> Any:
    """Values that a schema type accepts (mostly: patterns and bounds as msgspec states them)."""
    streams = streams or []
    if isinstance(t, mi.IntType):
        return _int_strategy(t)
    if isinstance(t, mi.FloatType):
        lo = t.ge if t.ge is not None else t.gt
        hi = t.le if t.le is not None else t.lt
        return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.StrType):
        return _str_strategy(t, name, streams)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy(x, name, streams) for x in t.types))
    if isinstance(t, mi.ListType):
        lo = t.min_length or 0
        return st.lists(strategy(t.item_type, name, streams), min_size=lo, max_size=max(lo, 4))
    if isinstance(t, mi.DictType):
        return st.dictionaries(
            strategy(t.key_type, name, streams), strategy(t.value_type, name, streams), max_size=3
        )
    if isinstance(t, mi.StructType):
        required = {
            f.encode_name: strategy(f.type, f.name, streams) for f in t.fields if f.required
        }
        optional = {
            f.encode_name: strategy(f.type, f.name, streams) for f in t.fields if not f.required
        }
        return st.fixed_dictionaries(required, optional=optional)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=6,
    )


HOSTILE_VALUES = st.sampled_from(
    [
        2**64,
        2**63,
        -(2**63) - 1,
        2**100,
        -1,
        0,
        float("nan"),
        float("inf"),
        float("-inf"),
        1e308,
        0.5,
        "\ud800",
        "ok\udfff",
        "x\x00y",
        " \u3000\t\n",
        "",
        "١٢",
        "9" * 40,
        "=cmd|' /C calc'!A0",
        [],
        {},
        {"a": {"b": [1]}},
        True,
        None,
        DEEP_MARK,
    ]
) | st.sampled_from(["a" * 50_000, "长" * 8_000])  # under the 64 KiB packet limit with \u escapes


def mutated(payload: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """A payload as the schema wants it (a quarter of the time) or with one hostile change."""

    @st.composite
    def build(draw: Any) -> Any:
        value = dict(draw(payload))
        kind = draw(st.sampled_from(["none", "replace", "replace", "add", "drop", "whole"]))
        if kind == "replace" and value:
            value[draw(st.sampled_from(sorted(value)))] = draw(HOSTILE_VALUES)
        elif kind == "add":
            value[draw(st.text(min_size=1, max_size=8))] = draw(HOSTILE_VALUES)
        elif kind == "drop" and value:
            value.pop(draw(st.sampled_from(sorted(value))))
        elif kind == "whole":
            return draw(HOSTILE_VALUES)
        return value

    return build()


def encode(value: Any) -> str:
    """Hostile JSON; DEEP_MARK becomes a list nested DEEP_LEVELS deep."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    return text.replace(json.dumps(DEEP_MARK), "[" * DEEP_LEVELS + "]" * DEEP_LEVELS)


# --- the target --------------------------------------------------------------------------------


class Target:
    """A real server with the demo school, one connected client per role, on its own loop."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server = self.run(start_server(make_settings(tmp_path, **settings)))
        self.clients: dict[str, HomeroomClient] = {}
        for role, username in ROLES.items():
            self.clients[role] = self.run(self.server.client(username))
        cid = self.server.class_id
        self.streams = [
            f"class:{cid}:students",
            f"class:{cid}:guardians",
            f"notices:{cid}:guardians",
            f"qa:{cid}",
            f"staff:{cid}",
            f"user:{self.server.uid('wanghao')}",
        ]
        gateway = self.server.app[GATEWAY]
        self.socket_routes: dict[str, type[Any]] = {"sync": schemas.Sync}
        self.socket_routes.update({name: schema for name, (schema, _a) in ROUTES.items()})
        self.socket_routes.update(
            {name: schema for name, (schema, _a) in gateway.sid_routes.items()}
        )
        self.tried = 0
        # How the server answered, by code (socket) or status (REST): a run that is refused
        # everywhere at the schema would test little past it.
        self.outcomes: Counter[str] = Counter()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(stop_server(self.server))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    # --- Socket.IO ---

    def socket_cases(self) -> st.SearchStrategy[tuple[str, str, Any]]:
        routes = sorted(self.socket_routes)
        payloads = {
            name: mutated(strategy(mi.type_info(self.socket_routes[name]), "", self.streams))
            for name in routes
        }
        return st.tuples(
            st.sampled_from(sorted(ROLES)),
            st.sampled_from(routes),
            st.data(),
        ).map(lambda t: (t[0], t[1], t[2].draw(payloads[t[1]])))

    def check_socket(self, role: str, event: str, payload: Any) -> Finding | None:
        return self.run(self._check_socket(role, event, payload))

    async def _check_socket(self, role: str, event: str, payload: Any) -> Finding | None:
        self.tried += 1
        body = encode([event, payload])
        client = self.clients[role]
        if not client.sio.connected:  # a previous case must never have cost the connection
            return Finding(f"socket {event}", role, "connection lost", body[:300])
        if len(body.encode()) > self.server.settings.max_packet_bytes - 100:
            # Over the packet limit Engine.IO closes the connection (WebSocket 1009) before
            # anything is read: by design, and not what is fuzzed here.
            return None
        before = await snapshot(self.server.app)
        answer = await raw_call(client, body)
        where = f"socket {event}"
        if answer == NO_ACK:
            return Finding(where, role, "no ack", body[:300])
        code = code_of(answer)
        self.outcomes[f"socket {code}"] += 1
        if code == "internal" or (code != "ok" and code not in CODES):
            return Finding(where, role, code, body[:300])
        if code != "ok" and await snapshot(self.server.app) != before:
            return Finding(where, role, f"changed state on refusal: {code}", body[:300])
        return None

    # --- REST ---

    def rest_cases(self) -> st.SearchStrategy[tuple[str, rest.Endpoint, str, str, Any]]:
        roles = st.sampled_from([*sorted(ROLES), "anonymous", "forged"])
        path_values = st.one_of(
            SMALL_IDS.map(str),
            st.sampled_from(["0", "-1", "18446744073709551616", "9" * 40, "1e3", "١", "%00"]),
            st.text(max_size=12).map(lambda s: urllib.parse.quote(s, safe="")),
        )

        @st.composite
        def build(draw: Any) -> tuple[str, rest.Endpoint, str, str, Any]:
            endpoint = draw(st.sampled_from(rest.API))
            path = endpoint.path
            while "{" in path:
                start, end = path.index("{"), path.index("}")
                value = draw(path_values) or "1"
                path = path[:start] + value + path[end + 1 :]
            query = draw(self._query(endpoint))
            if query:
                path += "?" + urllib.parse.urlencode(query)
            if endpoint.body is not None:
                body = encode(draw(mutated(strategy(mi.type_info(endpoint.body)))))
            elif endpoint.path.endswith("/roster"):
                body = draw(roster_texts())
            else:
                body = draw(st.sampled_from(["", "{}", "[" * 3000, '{"x":NaN}']))
            return draw(roles), endpoint, path, "", body

        return build()

    def _query(self, endpoint: rest.Endpoint) -> st.SearchStrategy[dict[str, str]]:
        values = st.one_of(
            SMALL_IDS.map(str),
            st.sampled_from(self.streams),
            st.sampled_from(["receipts", "covered", "not_covered", "0", "-5", "9" * 30]),
            st.text(max_size=10),
        )
        if endpoint.handler is rest.history:
            keys = st.sampled_from(["stream", "limit", "before", "x"])
        elif endpoint.handler is rest.notice_receipts:
            keys = st.sampled_from(["list", "after", "limit", "x"])
        else:
            return st.just({})
        return st.dictionaries(keys, values, max_size=3)

    def check_rest(
        self, role: str, endpoint: rest.Endpoint, path: str, body: str
    ) -> Finding | None:
        return self.run(self._check_rest(role, endpoint, path, body))

    async def _check_rest(
        self, role: str, endpoint: rest.Endpoint, path: str, body: str
    ) -> Finding | None:
        self.tried += 1
        token = {"anonymous": None, "forged": "eyJhbGciOiJub25lIn0.e30."}.get(
            role, self.clients[role].token if role in self.clients else None
        )
        where = f"REST {endpoint.method} {endpoint.path}"
        request = f"{endpoint.method} {path} {body[:200]!r}"
        content_type = "text/csv" if endpoint.path.endswith("/roster") else "application/json"
        before = await snapshot(self.server.app)
        status, answer, _headers = await http(
            self.server.url,
            endpoint.method,
            path,
            token=token,
            data=body.encode("utf-8", "surrogatepass"),
            content_type=content_type,
        )
        self.outcomes[f"REST {status}"] += 1
        if status >= 500:
            return Finding(where, role, f"status {status}", request)
        if status >= 400:
            code = code_of(answer)
            if code not in CODES and status not in (404, 405, 413):
                # 404/405/413 for paths that match no route or bodies over the size limit come
                # from aiohttp itself; everything routed answers with a code.
                return Finding(where, role, f"status {status} without a code: {code}", request)
            if await snapshot(self.server.app) != before:
                return Finding(where, role, f"changed state on refusal: {status}", request)
        return None


def roster_texts() -> st.SearchStrategy[str]:
    header = "student,student_username,guardian,guardian_username,relationship,phone"
    cells = st.one_of(
        st.text(max_size=12),
        st.sampled_from(['"', '"a""b"', "\r", "\r\n", "x\x00", "=1+1", "a" * 140_000]),
    )
    rows = st.lists(st.lists(cells, min_size=1, max_size=7).map(",".join), max_size=4)
    endings = st.sampled_from(["\n", "\r\n", "\r"])
    return st.tuples(st.sampled_from([header, "", "x,y"]), rows, endings).map(
        lambda t: t[2].join([t[0], *t[1]]) + t[2]
    )


def to_dict(finding: Finding) -> dict[str, str]:
    return msgspec.to_builtins(finding.__dict__)
