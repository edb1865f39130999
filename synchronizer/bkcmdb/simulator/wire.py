"""What the simulator puts on the wire: envelopes, auth checks and fault answers.

bk-cmdb is reached two ways and answers in two dialects (docs/bkcmdb-api.md):
- through the BlueKing API gateway (`X-Bkapi-Authorization` JSON header), whose answers say
  `code`/`message` — the apiserver renames its keys for gateway requests — and whose own
  refusals (bad app secret, rate limit, bad gateway) come in the gateway's shape
  `{code, code_name, message, result, data}` with a real HTTP status;
- direct to the apiserver (`BK_User`, `HTTP_BLUEKING_SUPPLIER_ID` headers), answering
  `bk_error_code`/`bk_error_msg`, with a missing header refused as HTTP 500 and code 1199027.

`AuthConfig` decides which dialect a simulator speaks and which credentials it accepts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from .. import codes

AuthMode = Literal["gateway", "direct"]
GATEWAY_HEADER = "X-Bkapi-Authorization"
DIRECT_USER_HEADER = "BK_User"
DIRECT_SUPPLIER_HEADER = "HTTP_BLUEKING_SUPPLIER_ID"

GATEWAY_STATUS_CODES: dict[int, tuple[int, str, str]] = {
    429: (codes.GW_RATE_LIMIT, "RATE_LIMIT_RESTRICTION",
          "API rate limit exceeded by resource strategy"),
    502: (codes.GW_BAD_GATEWAY, "BAD_GATEWAY",
          'Bad Gateway [upstream_error="cannot read header from upstream"]'),
    504: (codes.GW_BACKEND_TIMEOUT, "REQUEST_BACKEND_TIMEOUT",
          'Request backend service timeout [upstream_error="cannot read header from upstream"]'),
}
"""The gateway's own answer for a status, from its error response guide."""


@dataclass(slots=True, kw_only=True)
class AuthConfig:
    """Which dialect the simulator speaks and whom it lets in."""

    mode: AuthMode = "gateway"
    app_code: str = "bcs"
    app_secret: str = field(default="sim-secret", repr=False)
    supplier_account: str = "0"
    denied_users: set[str] = field(default_factory=set)
    denied_apps: set[str] = field(default_factory=set)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json",
                        headers=headers)


def gateway_refusal(status: int, code: int, code_name: str, text: str,
                    headers: dict[str, str] | None = None) -> web.Response:
    """An answer made by the gateway itself, in its own shape."""
    return _json({"code": code, "data": None, "code_name": code_name, "message": text,
                  "result": False}, status, headers)


def answer(mode: AuthMode, data: Any, *, code: int = 0, text: str = "success",
           status: int = 200, permission: Any = None) -> web.Response:
    """bk-cmdb's envelope in the dialect of `mode`."""
    result = code == codes.SUCCESS
    if mode == "gateway":
        body = {"result": result, "code": code, "message": text, "permission": permission,
                "data": data, "request_id": uuid.uuid4().hex}
    else:
        body = {"result": result, "bk_error_code": code, "bk_error_msg": text,
                "permission": permission, "data": data}
    return _json(body, status)


def check_auth(auth: AuthConfig, request: web.Request) -> web.Response | None:
    """None if the request's credentials pass; else the refusal bk-cmdb or its gateway sends."""
    headers = request.headers
    if auth.mode == "direct":
        if not headers.get(DIRECT_SUPPLIER_HEADER):
            return answer("direct", None, code=codes.NOT_AUTH_ITEM, status=500,
                          text=codes.message(codes.NOT_AUTH_ITEM, "owner_id"))
        user = headers.get(DIRECT_USER_HEADER)
        if not user:
            return answer("direct", None, code=codes.NOT_AUTH_ITEM, status=500,
                          text=codes.message(codes.NOT_AUTH_ITEM, "user"))
        if user in auth.denied_users:
            return answer("direct", None, code=codes.NO_PERMISSION,
                          text=codes.message(codes.NO_PERMISSION), permission={"actions": []})
        return None
    raw = headers.get(GATEWAY_HEADER, "")
    try:
        creds = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        creds = {}
    if not isinstance(creds, dict):
        creds = {}

    def invalid(reason: str) -> web.Response:
        return gateway_refusal(400, codes.GW_INVALID_ARGS, "INVALID_ARGS",
                               f'Parameters error [reason="{reason}"]')
    if not creds.get("bk_app_code"):
        return invalid("app code cannot be empty")
    if not creds.get("bk_app_secret"):
        return invalid("please provide bk_app_secret or bk_signature to verify app")
    if creds["bk_app_code"] != auth.app_code or creds["bk_app_secret"] != auth.app_secret:
        return invalid("bk_app_code or bk_app_secret is incorrect")
    if not creds.get("bk_username"):
        return invalid("user authentication failed, please provide a valid user identity, "
                       "such as bk_username, bk_token, access_token")
    if creds["bk_app_code"] in auth.denied_apps:
        return gateway_refusal(403, codes.GW_APP_NO_PERMISSION, "APP_NO_PERMISSION",
                               "App has no permission to the resource")
    if creds["bk_username"] in auth.denied_users:
        return answer("gateway", None, code=codes.NO_PERMISSION,
                      text=codes.message(codes.NO_PERMISSION), permission={"actions": []})
    return None


def status_answer(mode: AuthMode, status: int, retry_after: float | None,
                  text: str | None) -> web.Response:
    """The answer for an injected HTTP status, as the component in front would send it."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    if mode == "gateway":
        code, name, default = GATEWAY_STATUS_CODES.get(
            status, (codes.GW_ERROR_REQUESTING_RESOURCE, "ERROR_REQUESTING_RESOURCE",
                     f'Request backend service failed [status="{status}"]'))
        if status == 429:
            reset = f"{retry_after:g}" if retry_after is not None else "1"
            headers.update({"X-Bkapi-RateLimit-Limit": "100", "X-Bkapi-RateLimit-Remaining": "0",
                            "X-Bkapi-RateLimit-Reset": reset,
                            "X-Bkapi-RateLimit-Plugin": "bk-resource-rate-limit"})
        return gateway_refusal(status, code, name, text or default, headers)
    if status == 429:
        return web.Response(status=429, text=text or "429 Too Many Requests", headers=headers)
    return web.Response(
        status=status, content_type="application/json", headers=headers,
        body=orjson.dumps({"result": False, "bk_error_code": codes.PROXY_REQUEST_FAILED,
                           "bk_error_msg": text or "proxy request failed, injected",
                           "permission": None, "data": None}))
