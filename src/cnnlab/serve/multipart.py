"""Read a multipart upload into memory, within limits, refusing early what is too big.

Starlette's own form parser spools files over 1 MB to a temporary file; uploads here never
touch the disk (they may be patient images), and a request over the byte limit is refused
as soon as it is known to be too big: from Content-Length, or while it streams in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from cnnlab.fileio import MIB

FIELD = "files"
MAX_BOUNDARY = 70  # RFC 2046: 1 to 70 characters


class UploadError(Exception):
    """A refused request: HTTP status, a short code and a message that says what was wrong."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Upload:
    filename: str
    data: bytes


async def read_body(request: Request, max_bytes: int, timeout: float | None = None) -> bytes:
    """The whole body, or UploadError 413 once it is known to exceed `max_bytes`, 408 when it
    has not all arrived within `timeout` seconds (a client that sends half a body and waits
    must not hold a connection, nor a shutdown, for ever), 400 when the client left."""
    too_big = UploadError(
        413, "request_too_large", f"the request is over the {max_bytes / MIB:g} MiB limit"
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_big
    chunks, total = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_bytes:
                    raise too_big
                chunks.append(chunk)
    except TimeoutError:
        raise UploadError(408, "request_timeout", f"the request body did not arrive within "
                          f"{timeout:g} s") from None  # fmt: skip
    except ClientDisconnect:  # nobody to answer; no traceback in the log either
        raise UploadError(400, "client_disconnected", "the client closed the connection") from None
    return b"".join(chunks)


def parse_uploads(body: bytes, content_type: str, max_files: int) -> list[Upload]:
    """The parts of form field `files`, in order; at most `max_files` (else 413)."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise UploadError(
            415,
            "unsupported_media_type",
            f"send images as multipart/form-data in form field '{FIELD}' "
            f"(got Content-Type {content_type or 'none'!r})",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_multipart", "multipart/form-data without a boundary")
    if len(boundary) > MAX_BOUNDARY:
        raise UploadError(400, "bad_multipart", f"the multipart boundary is {len(boundary)} "
                          f"characters; at most {MAX_BOUNDARY} are allowed (RFC 2046)")  # fmt: skip
    if not body:
        raise UploadError(400, "no_files", f"empty request: send one or more images in '{FIELD}'")

    uploads: list[Upload] = []
    other_fields: list[str] = []
    part: dict = {}

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, data=[], field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part["data"].append(data[start:end])

    def on_part_end() -> None:
        _, opts = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        if name != FIELD:
            other_fields.append(name or "(unnamed)")
            return
        if len(uploads) >= max_files:
            raise UploadError(
                413, "too_many_images", f"more than {max_files} images in one request"
            )
        filename = opts.get(b"filename", b"").decode("utf-8", "replace")
        uploads.append(Upload(filename or f"{FIELD}[{len(uploads)}]", b"".join(part["data"])))

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as e:  # noqa: BLE001 - FormParserError and kin: every one is the body's fault
        raise UploadError(400, "bad_multipart", f"malformed multipart body: {e}") from None
    if not uploads:
        got = f" (got field{'s' if len(other_fields) > 1 else ''}: {', '.join(other_fields)})"
        raise UploadError(
            400,
            "no_files",
            f"no images in form field '{FIELD}'{got if other_fields else ''}",
        )
    return uploads
