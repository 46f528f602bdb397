"""The few setup calls the bench makes itself (sign-up, sign-in), over plain http.client:
not measured, so simplicity beats speed here."""

from __future__ import annotations

import http.client
import json

from . import seed


def post_json(port: int, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def signup(port: int) -> None:
    """Register the bench user through the API (bcrypt at the server's cost)."""
    body = {"username": seed.USERNAME, "email": seed.EMAIL, "password": seed.PASSWORD}
    status, answer = post_json(port, "/api/auth/signup", body)
    if status != 201:
        raise RuntimeError(f"signup answered {status}: {answer}")


def signin(port: int) -> dict:
    """The bench user's sign-in answer: accessToken, refreshToken, ..."""
    status, answer = post_json(port, "/api/auth/signin", signin_body())
    if status != 200:
        raise RuntimeError(f"signin answered {status}: {answer}")
    return answer


def signin_body() -> dict:
    return {"username": seed.USERNAME, "password": seed.PASSWORD}


def get_status(port: int, path: str, access_token: str) -> int:
    """The status of one GET presenting `access_token` in x-access-token."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"x-access-token": access_token})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
