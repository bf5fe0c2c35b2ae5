"""OpenAI's error format, and the refusal a pipeline stage raises to answer with it."""

from __future__ import annotations

import msgspec

_encode = msgspec.json.Encoder().encode


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return _encode({"error": {"message": message, "type": type_, "param": param, "code": code}})


class Refusal(Exception):
    """The call ends here with `status` and an OpenAI error; the call is still logged."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type_, self.param, self.code = status, message, type_, param, code
        self.headers = headers or []

    def body(self) -> bytes:
        return error_body(self.message, self.type_, self.param, self.code)
