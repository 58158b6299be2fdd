"""REST endpoints of attachments: uploads (tus-like, resumable), download links, the download
itself (signed link, byte ranges) and a school's storage settings. Listed in ``rest.API``."""

from __future__ import annotations

from aiohttp import web

from realtime import schemas
from realtime.actions import downloads, retention, upload_chunks, uploads
from realtime.actions.uploads import Files
from realtime.domain import attachments as rules
from realtime.domain.uploads import OffsetMismatch
from realtime.errors import bad_request
from realtime.transport.rest import HUB, Endpoint, _json, body, error_response, identity

FILES = web.AppKey("files", Files)
# tus's name for the offset header; the body of a PATCH is raw bytes.
OFFSET = "Upload-Offset"
READ_BYTES = 256 * 1024


def _upload_id(request: web.Request) -> str:
    value = request.match_info["upload_id"]
    if not (8 <= len(value) <= 32) or not all(c.isalnum() or c in "-_" for c in value):
        raise bad_request("upload_id is not valid")
    return value


async def create_upload(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    req = body(request)  # validated at the edge against schemas.UploadCreate
    files = request.app[FILES]
    return _json(
        await uploads.create(request.app[HUB], files, who.user_id, who.school_id, req), 201
    )


async def upload_status(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    res = await uploads.status(request.app[HUB], who.user_id, _upload_id(request))
    return _json(res, headers={OFFSET: str(res["upload"]["offset"])})


async def upload_chunk(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    upload_id = _upload_id(request)
    try:
        offset = int(request.headers.get(OFFSET, ""))
    except ValueError:
        raise bad_request(f"the {OFFSET} header (a byte offset) is required") from None
    if offset < 0:
        raise bad_request(f"{OFFSET} cannot be negative")
    files = request.app[FILES]
    try:
        res = await upload_chunks.append(
            request.app[HUB],
            files,
            who.user_id,
            upload_id,
            offset,
            request.content_length,
            request.content.iter_chunked(READ_BYTES),
        )
    except OffsetMismatch as exc:
        resp = error_response(exc, {"offset": exc.offset})
        resp.headers[OFFSET] = str(exc.offset)
        return resp
    return _json(res, headers={OFFSET: str(res["upload"]["offset"])})


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    files = request.app[FILES]
    return _json(await uploads.cancel(request.app[HUB], files, who.user_id, _upload_id(request)))


async def upload_links(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    req = body(request)  # validated at the edge against schemas.UploadLinks
    return _json(await downloads.links(request.app[HUB], who.user_id, req))


async def download(request: web.Request) -> web.StreamResponse:
    files = request.app[FILES]
    q = request.query
    d = await downloads.open_download(
        request.app[HUB],
        files,
        _upload_id(request),
        request.match_info["variant"],
        q.get("exp", ""),
        q.get("sig", ""),
    )
    start, end, status = 0, d.size, 200
    header = request.headers.get("Range")
    if header:
        try:
            rng = rules.parse_range(header, d.size)
        except ValueError:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{d.size}"})
        if rng is not None:
            (start, end), status = rng, 206
    resp = web.StreamResponse(status=status)
    resp.content_type = d.mime
    resp.content_length = end - start
    resp.headers["Accept-Ranges"] = "bytes"
    resp.headers["Content-Disposition"] = rules.content_disposition(d.name, d.inline)
    resp.headers["Cache-Control"] = "private, max-age=300"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if status == 206:
        resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{d.size}"
    await resp.prepare(request)
    if request.method != "HEAD":
        async for chunk in files.blobs.read(d.key, start, end):
            await resp.write(chunk)
    await resp.write_eof()
    return resp


async def get_school_storage(request: web.Request) -> web.StreamResponse:
    return _json(await retention.get_storage(request.app[HUB], identity(request)))


async def set_school_storage(request: web.Request) -> web.StreamResponse:
    who = identity(request)
    req = body(request)  # validated at the edge against schemas.SchoolStorage
    return _json(await retention.set_storage(request.app[HUB], who, req))


UPLOAD_API: list[Endpoint] = [
    Endpoint(
        "POST",
        "/api/v1/uploads",
        create_upload,
        "Start an upload: its name and size (checked against limits and the school's quota)",
        True,
        schemas.UploadCreate,
    ),
    Endpoint(
        "GET",
        "/api/v1/uploads/{upload_id}",
        upload_status,
        "An upload's offset (to resume an interrupted one) and, once complete, its attachment",
    ),
    Endpoint(
        "PATCH",
        "/api/v1/uploads/{upload_id}",
        upload_chunk,
        "Append bytes at the Upload-Offset header (raw body); the last chunk completes it",
    ),
    Endpoint(
        "DELETE",
        "/api/v1/uploads/{upload_id}",
        cancel_upload,
        "Cancel an upload that is not attached",
    ),
    Endpoint(
        "POST",
        "/api/v1/uploads/links",
        upload_links,
        "Signed short-lived download links for files one may see",
        True,
        schemas.UploadLinks,
    ),
    Endpoint(
        "GET",
        "/files/{upload_id}/{variant}",
        download,
        "Download (a signed link: exp and sig in the query); byte ranges supported",
        False,
    ),
    Endpoint(
        "GET",
        "/api/v1/school/storage",
        get_school_storage,
        "The school's storage used, quota and retention (school admins)",
    ),
    Endpoint(
        "PUT",
        "/api/v1/school/storage",
        set_school_storage,
        "Set the school's storage quota and retention (school admins)",
        True,
        schemas.SchoolStorage,
    ),
]
