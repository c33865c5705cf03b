"""Reading a ``multipart/form-data`` body for its text fields only, as it streams in: file
parts (an inbound email's attachments) are counted and their bytes dropped as they pass,
never held in memory nor spooled to disk. Field values stay bytes, for the caller to decode
in the character set it knows of."""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header


class BadForm(Exception):
    """The body cannot be read as the form it should be: ``status`` says how to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Parts:
    """The parser's callbacks: one text field or file part at a time."""

    def __init__(self, max_fields: int):
        self.max_fields = max_fields
        self.fields: dict[str, bytes] = {}
        self.files = 0
        self._name: str | None = None
        self._file = False
        self._data = bytearray()
        self._header = bytearray()
        self._value = bytearray()
        self._disposition = b""

    def on_part_begin(self) -> None:
        self._name, self._file, self._data, self._disposition = None, False, bytearray(), b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header).lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._header, self._value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise BadForm(400, "a form part has no name")
        self._name = name.decode("utf-8", "replace")
        self._file = b"filename" in options
        if self._file:
            self.files += 1
        elif len(self.fields) >= self.max_fields:
            raise BadForm(400, f"more than {self.max_fields} form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._file:  # a file's bytes are dropped here, unread
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._name is not None and not self._file:
            self.fields.setdefault(self._name, bytes(self._data))


async def text_fields(
    content_type: str, body: AsyncIterator[bytes], max_fields: int = 64
) -> tuple[dict[str, bytes], int]:
    """The text fields of a multipart body (the first of each name) and how many file parts
    it had. The body's size is capped before this (course.web.limits.BodyLimit)."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise BadForm(415, "send multipart/form-data, as SendGrid's Inbound Parse does")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadForm(400, "the multipart body has no boundary")
    parts = _Parts(max_fields)
    callbacks = {name: getattr(parts, name) for name in dir(_Parts) if name.startswith("on_")}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise BadForm(400, "the multipart body could not be read") from exc
    return parts.fields, parts.files
