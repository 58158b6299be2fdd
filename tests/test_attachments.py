"""Attachments end to end: real server, real clients, real files, real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from clients import files
from clients.homeroom import RequestError
from realtime.actions import retention
from realtime.actions.accounts import create_user
from realtime.actions.downloads import link_secret
from realtime.actions.roster import add_member, create_class, link_guardian
from realtime.domain.attachments import sign_link
from realtime.domain.roles import Role
from realtime.transport.rest import HUB
from realtime.transport.uploads import FILES
from tests.attachment_files import (
    GPS_IFD,
    docx_bytes,
    heic_bytes,
    jpeg_with_gps,
    mp4_video,
    pdf_bytes,
    png_bytes,
    webm_voice,
)
from tests.conftest import Server


async def _link(c, upload_id: str, variant: str = "original") -> str:  # type: ignore[no-untyped-def]
    return (await files.links(c, [upload_id], variant))[upload_id]


async def test_photo_in_chat_reaches_classmate_without_gps(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    photo = jpeg_with_gps(64, 32, orientation=6)
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(GPS_IFD)  # the input has GPS
    att = await wang.upload(photo, "IMG_0001.jpg")
    assert att["kind"] == "image" and (att["width"], att["height"]) == (32, 64)
    msg = await wang.send_chat(stream, "今天的作业", attachments=[att["id"]])
    assert [a["id"] for a in msg["attachments"]] == [att["id"]]
    ev = await liming.wait_for(
        lambda e: e["type"] == "chat.message" and e["data"]["id"] == msg["id"]
    )
    assert ev["data"]["attachments"][0]["name"] == "IMG_0001.jpg"
    # The classmate fetches thumbnail and original through signed links.
    for variant in ("thumb", "preview", "original"):
        status, headers, body = await files.download(await _link(liming, att["id"], variant))
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        im = Image.open(io.BytesIO(body))
        exif = im.getexif()
        assert not exif.get_ifd(GPS_IFD) and 0x010F not in exif and ORIENT not in exif
        assert b"SN-123456789" not in body and b"PhoneMaker" not in body
        # Orientation applied: the photo stands upright (taller than wide), blue half on top.
        assert im.height > im.width
        assert im.convert("RGB").getpixel((im.width // 2, 1))[2] > 150
    # History (a reconnecting client's catch-up) carries the attachment too.
    hist = await liming.history(stream)
    assert hist["messages"][-1]["attachments"][0]["id"] == att["id"]


ORIENT = 0x0112


async def test_interrupted_upload_resumes_where_it_stopped(server: Server) -> None:
    wang = await server.client("wanghao")
    data = pdf_bytes(pad=600_000)
    up = await files.create(wang, "练习.pdf", len(data))
    cut = int(len(data) * 0.8)
    # A phone loses its network at 80 %: the connection closes in the middle of the body.
    host, port = "127.0.0.1", server.settings.port
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"PATCH /api/v1/uploads/{up['id']} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {wang.token}\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:cut]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    # The server keeps what arrived: wait until the offset stops moving.
    offset, seen = -1, []
    for _ in range(50):
        state = await files.offset(wang, up["id"])
        seen.append(state["offset"])
        if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3] and seen[-1] > 0:
            offset = seen[-1]
            break
        await asyncio.sleep(0.1)
    assert 0 < offset <= cut and state["status"] == "uploading"
    # A chunk sent at the wrong offset is refused with the offset to continue from.
    with pytest.raises(RequestError) as err:
        await files.send_chunk(wang, up["id"], data, 0, 10)
    assert err.value.code == "conflict"
    done = await files.resume(wang, up["id"], data)
    assert done["status"] == "ready"
    att = done["attachment"]
    msg = await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    status, headers, body = await files.download(await _link(wang, att["id"]))
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert msg["attachments"][0]["size"] == len(data)
    # The UTF-8 name comes back (RFC 5987) for the download.
    disp = headers["Content-Disposition"]
    assert unquote(disp.split("filename*=UTF-8''")[1]) == "练习.pdf"


async def test_guardian_of_another_class_cannot_fetch(server: Server) -> None:
    hub = server.app[HUB]
    async with hub.store.transaction() as conn:
        school_id = 1
        other = await create_class(conn, school_id, "六年级一班")
        kid = await create_user(conn, school_id, "zhao_kid", "赵六", None, now=0.0)
        mom = await create_user(conn, school_id, "zhao_mom", "赵六妈妈", None, now=0.0)
        await add_member(conn, other, kid, Role.STUDENT)
        await link_guardian(conn, other, mom, kid, "mother", status="approved", by=None, now=0.0)
    teacher = await server.client("li")
    wang_mom = await server.client("wang_mom")
    stranger = await server.client(None)
    stranger.token = hub.tokens.issue(mom, school_id)
    att = await teacher.upload(pdf_bytes(), "五年级二班作业.pdf")
    conv = await teacher.open_conversation(server.class_id, server.uid("wang_mom"))
    msg = await teacher.send_chat(conv["stream"], "请签字", attachments=[att["id"]])
    status, headers, _body = await files.download(await _link(wang_mom, att["id"]))
    assert status == 200
    assert (
        "filename*=UTF-8''%E4%BA%94%E5%B9%B4%E7%BA%A7%E4%BA%8C%E7%8F%AD%E4%BD%9C%E4%B8%9A.pdf"
        in (headers["Content-Disposition"])
    )
    with pytest.raises(RequestError) as err:
        await files.links(stranger, [att["id"]])
    assert err.value.code == "forbidden"
    # A classmate's guardian who is not in the conversation cannot either.
    li_mom = await server.client("li_mom", connect=False)
    with pytest.raises(RequestError) as err:
        await files.links(li_mom, [att["id"]])
    assert err.value.code == "forbidden"
    # Nor can the message id be used to attach the file elsewhere.
    with pytest.raises(RequestError) as err:
        await stranger.http(
            "POST", "/api/v1/uploads/links", {"ids": [att["id"]], "variant": "thumb"}
        )
    assert err.value.code == "forbidden" and msg["id"]


async def test_signed_link_expires_and_cannot_be_altered(server: Server) -> None:
    hub = server.app[HUB]
    wang = await server.client("wanghao")
    att = await wang.upload(png_bytes(), "a.png")
    await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    good = await _link(wang, att["id"])
    assert (await files.download(good))[0] == 200
    expired = server.url + sign_link(link_secret(hub), att["id"], "original", int(time.time()) - 1)
    status, _h, body = await files.download(expired)
    assert status == 403 and b"link_expired" in body
    longer = good.replace("exp=", "exp=9")
    status, _h, body = await files.download(longer)
    assert status == 403 and b"forbidden" in body


async def test_content_that_is_not_what_the_name_says_is_refused(server: Server) -> None:
    wang = await server.client("wanghao")
    with pytest.raises(RequestError) as err:
        await wang.upload(png_bytes(), "homework.pdf")
    assert err.value.code == "unsupported_type"
    with pytest.raises(RequestError) as err:
        await wang.upload(b"MZ\x90\x00" + b"\x00" * 5000, "photo.jpg")
    assert err.value.code == "unsupported_type"
    # Nothing was kept: the school's storage is as before.
    admin = await server.client("admin", connect=False)
    usage = await admin.http("GET", "/api/v1/school/storage")
    assert usage["used_bytes"] == 0


async def test_quota_exceeded_has_a_clear_code(server: Server) -> None:
    admin = await server.client("admin", connect=False)
    wang = await server.client("wanghao")
    with pytest.raises(RequestError) as err:
        await wang.http("PUT", "/api/v1/school/storage", {"quota_bytes": 10})
    assert err.value.code == "forbidden"
    await admin.http("PUT", "/api/v1/school/storage", {"quota_bytes": 3000})
    first = await wang.upload(png_bytes(), "ok.png")
    with pytest.raises(RequestError) as err:
        await files.create(wang, "big.pdf", 3000)
    assert err.value.code == "quota_exceeded"
    usage = await admin.http("GET", "/api/v1/school/storage")
    assert usage["used_bytes"] == first["size"] and usage["quota_bytes"] == 3000


async def test_voice_message_duration_and_ranges(server: Server) -> None:
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    voice = webm_voice(2.0)
    att = await wang.upload(voice, "voice.webm")
    assert att["kind"] == "audio" and att["mime"] == "audio/webm"
    assert 1.9 <= att["duration_s"] <= 2.2
    await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    url = await _link(liming, att["id"])
    status, headers, body = await files.download(url, (100, 199))
    assert status == 206 and body == voice[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(voice)}"
    assert headers["Accept-Ranges"] == "bytes"


async def test_deleting_the_message_deletes_its_files(server: Server) -> None:
    stream = f"class:{server.class_id}:students"
    wang = await server.client("wanghao")
    same = pdf_bytes(pad=100)
    a = await wang.upload(same, "a.pdf")
    b = await wang.upload(same, "b.pdf")  # the same bytes: stored once
    blobs = Path(server.settings.storage_dir) / "blobs"
    stored = [p for p in blobs.rglob("*") if p.is_file()]
    assert len(stored) == 1
    m1 = await wang.send_chat(stream, "one", attachments=[a["id"]])
    await wang.send_chat(stream, "two", attachments=[b["id"]])
    # An attached file cannot be attached again.
    with pytest.raises(RequestError) as err:
        await wang.send_chat(stream, "again", attachments=[a["id"]])
    assert err.value.code == "conflict"
    await wang.request("chat.delete", {"message_id": m1["id"]})
    with pytest.raises(RequestError) as err:
        await files.links(wang, [a["id"]])
    assert err.value.code == "not_found"
    assert stored[0].exists()  # b still refers to the bytes
    # The retention sweep (a school keeping files 1 day) removes b two days later.
    admin = await server.client("admin", connect=False)
    await admin.http("PUT", "/api/v1/school/storage", {"retention_days": 1})
    hub = server.app[HUB]
    gone = await retention.sweep(hub, server.app[FILES], now=time.time() + 2 * 86400)
    assert gone == {"files": 1, "blobs": 1}
    assert not stored[0].exists()
    with pytest.raises(RequestError) as err:
        await files.links(wang, [b["id"]])
    assert err.value.code == "not_found"


async def test_files_in_notices_and_questions(server: Server) -> None:
    teacher = await server.client("li")
    mom = await server.client("wang_mom")
    wang = await server.client("wanghao")
    form = await teacher.upload(pdf_bytes(), "春游回执.pdf")
    notice = await teacher.publish_notice(server.class_id, "春游", attachments=[form["id"]])
    ev = await mom.wait_for(
        lambda e: e["type"] == "notice.published" and e["data"]["id"] == notice["id"]
    )
    assert ev["data"]["attachments"][0]["name"] == "春游回执.pdf"
    assert (await files.download(await _link(mom, form["id"])))[0] == 200
    page = await wang.upload(jpeg_with_gps(), "q.jpg")
    q = await wang.ask(server.class_id, "这题怎么做？", attachments=[page["id"]])
    assert q["attachments"][0]["id"] == page["id"]
    sketch = await teacher.upload(png_bytes(), "answer.png")
    answered = await teacher.answer(q["id"], "看图", attachments=[sketch["id"]])
    assert answered["answer_attachments"][0]["id"] == sketch["id"]
    liming = await server.client("liming", connect=False)
    got = await files.links(liming, [page["id"], sketch["id"]], "thumb")
    assert len(got) == 2
    # A guardian sees notices, not the students' Q&A.
    with pytest.raises(RequestError) as err:
        await files.links(mom, [page["id"]])
    assert err.value.code == "forbidden"


async def test_heic_photo_is_served_as_jpeg(server: Server) -> None:
    wang = await server.client("wanghao")
    att = await wang.upload(heic_bytes(64, 32), "IMG_0002.HEIC")
    assert att["kind"] == "image" and (att["width"], att["height"]) == (64, 32)
    await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    status, headers, body = await files.download(await _link(wang, att["id"]))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    assert "IMG_0002.jpg" in headers["Content-Disposition"]


async def test_files_in_homework_and_submissions(server: Server) -> None:
    teacher = await server.client("li")
    wang = await server.client("wanghao")
    mom = await server.client("wang_mom", connect=False)
    liming = await server.client("liming", connect=False)
    sheet = await teacher.upload(pdf_bytes(), "练习册第3页.pdf")
    hw = await teacher.assign_homework(
        server.class_id, "练习册", time.time() + 3600, "见附件", attachments=[sheet["id"]]
    )
    assert [a["name"] for a in hw["attachments"]] == ["练习册第3页.pdf"]
    # The class sees the instructions' file: a student and a guardian alike.
    for c in (wang, mom, liming):
        assert (await files.download(await _link(c, sheet["id"])))[0] == 200
    # A photo of the page as the submission (no text needed); the student's guardian and the
    # teacher see it, a classmate does not.
    page = await wang.upload(jpeg_with_gps(), "作业.jpg")
    sub = await wang.submit_homework(hw["id"], "", attachments=[page["id"]])
    assert [a["id"] for a in sub["attachments"]] == [page["id"]]
    for c in (teacher, mom, wang):
        assert (await files.download(await _link(c, page["id"], "thumb")))[0] == 200
    with pytest.raises(RequestError) as err:
        await files.links(liming, [page["id"]])
    assert err.value.code == "forbidden"
    with pytest.raises(RequestError) as err:  # nothing at all: refused, nothing stored
        await wang.submit_homework(hw["id"], "  ")
    assert err.value.code == "bad_request"
    # Resubmitted with the first photo kept and a second added; then with the second only: the
    # first goes (its bytes too, nothing else uses them).
    page2 = await wang.upload(png_bytes(), "第二页.png")
    sub = await wang.submit_homework(hw["id"], "补一页", attachments=[page["id"], page2["id"]])
    assert [a["id"] for a in sub["attachments"]] == [page["id"], page2["id"]]
    assert (await files.download(await _link(mom, page["id"], "thumb")))[0] == 200
    sub = await wang.submit_homework(hw["id"], "只交第二页", attachments=[page2["id"]])
    assert [a["id"] for a in sub["attachments"]] == [page2["id"]]
    with pytest.raises(RequestError) as err:
        await files.links(mom, [page["id"]])
    assert err.value.code == "not_found"
    assert (await files.download(await _link(mom, page2["id"], "thumb")))[0] == 200


def _stored(server: Server) -> list[Path]:
    """The files kept in the blob store (not the parts of unfinished uploads)."""
    blobs = Path(server.settings.storage_dir) / "blobs"
    return [p for p in blobs.rglob("*") if p.is_file() and "parts" not in p.parts]


async def test_a_photo_deleted_while_it_is_being_finished_leaves_no_bytes(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent sends the wrong photo and deletes it at once, before its stripped original and
    preview are made: they are not kept once made."""
    fs = server.app[FILES]
    entered, go_on = asyncio.Event(), asyncio.Event()
    make = fs.workers.preview_and_original

    async def held(*args: Path) -> str:  # the real worker, after the message is deleted
        entered.set()
        await go_on.wait()
        return await make(*args)

    monkeypatch.setattr(fs.workers, "preview_and_original", held)
    wang = await server.client("wanghao")
    att = await wang.upload(jpeg_with_gps(640, 480), "不是这张.jpg")
    msg = await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    await asyncio.wait_for(entered.wait(), 10)
    await wang.request("chat.delete", {"message_id": msg["id"]})
    go_on.set()
    await fs.photos.wait(att["id"], 30)
    assert att["id"] not in fs.photos.tasks
    assert _stored(server) == []


async def test_bytes_whose_removal_failed_go_with_the_next_sweep(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails while a message is deleted: the deletion still succeeds, and the file's
    bytes are removed by the next sweep rather than kept for ever."""
    fs = server.app[FILES]
    wang = await server.client("wanghao")
    att = await wang.upload(pdf_bytes(pad=2000), "家长会.pdf")
    msg = await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    [stored] = _stored(server)
    remove = fs.blobs.delete

    async def down(key: str) -> None:
        raise OSError("the store is not answering")

    monkeypatch.setattr(fs.blobs, "delete", down)
    deleted = await wang.request("chat.delete", {"message_id": msg["id"]})
    assert deleted["deleted"]["message_id"] == msg["id"]
    with pytest.raises(RequestError) as err:
        await files.links(wang, [att["id"]])
    assert err.value.code == "not_found"
    assert stored.exists()
    await retention.sweep(server.app[HUB], fs)  # still down: kept for the next one
    assert stored.exists()
    monkeypatch.setattr(fs.blobs, "delete", remove)
    await retention.sweep(server.app[HUB], fs)
    assert not stored.exists() and _stored(server) == []


async def test_a_video_is_served_in_ranges(server: Server) -> None:
    """A video from sports day plays from any point: the player asks for byte ranges."""
    wang = await server.client("wanghao")
    liming = await server.client("liming")
    video = mp4_video()
    att = await wang.upload(video, "运动会.mp4")
    assert att["kind"] == "video" and att["mime"] == "video/mp4"
    await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    url = await _link(liming, att["id"])
    status, headers, body = await files.download(url, (1000, 1499))
    assert status == 206 and body == video[1000:1500]
    assert headers["Content-Range"] == f"bytes 1000-1499/{len(video)}"
    assert headers["Content-Type"] == "video/mp4" and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"].startswith("inline;")
    status, headers, _body = await files.download(url, (len(video), len(video) + 10))
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(video)}"


async def test_a_photo_has_a_thumbnail_a_preview_and_the_upright_original(server: Server) -> None:
    """A 12-megapixel phone photo: a small thumbnail for the chat, a mid-size preview for the
    viewer, and the full photo upright without its metadata."""
    wang = await server.client("wanghao")
    photo = jpeg_with_gps(4000, 3000, orientation=6)
    att = await wang.upload(photo, "IMG_2001.jpg")
    assert (att["width"], att["height"]) == (3000, 4000)
    await wang.send_chat(f"class:{server.class_id}:students", "", attachments=[att["id"]])
    sizes = {}
    for variant in ("thumb", "preview", "original"):
        status, _h, body = await files.download(await _link(wang, att["id"], variant))
        assert status == 200
        im = Image.open(io.BytesIO(body))
        assert not im.getexif().get_ifd(GPS_IFD) and b"SN-123456789" not in body
        sizes[variant] = im.size
    assert sizes["thumb"] == (240, 320)
    assert sizes["preview"] == (960, 1280)
    assert sizes["original"] == (3000, 4000)


async def test_damaged_files_are_refused_as_unreadable(server: Server) -> None:
    """A Word file damaged on its way, a photo cut short, an iPhone photo with a broken header:
    each is refused as a file that cannot be sent (not answered as a server error), and nothing
    of it is kept."""
    wang = await server.client("wanghao")
    ok = await wang.upload(docx_bytes(), "作文.docx")
    assert ok["mime"].endswith("wordprocessingml.document")
    photo = jpeg_with_gps(640, 480)
    heic = bytearray(heic_bytes(64, 32))
    heic[89] ^= 0xFF  # its item location box no longer points at the picture
    damaged = [
        (docx_bytes(broken=True), "作文2.docx"),
        (photo[:700], "cut.jpg"),  # ends inside its EXIF
        (bytes(heic), "IMG_0003.HEIC"),
    ]
    for data, name in damaged:
        with pytest.raises(RequestError) as err:
            await wang.upload(data, name)
        assert err.value.code == "unsupported_type", name
    admin = await server.client("admin", connect=False)
    usage = await admin.http("GET", "/api/v1/school/storage")
    assert usage["used_bytes"] == ok["size"]
