"""What hashing on every core does to another route's tail latency, without the server.

A bare aiohttp route is probed by wrk (4 connections) while N bcrypt loops run at the
lowest CPU priority Linux has (SCHED_IDLE), as threads (bcrypt releases the GIL) or as
processes (no GIL at all): whether the tail that sign-in storms add to other routes comes
from the cores being busy or from the hashing threads taking the GIL back. Repeat it: on a
shared machine one run proves little.

    python -m bench.contention          # needs wrk; about 30 s
"""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import time

import bcrypt
from aiohttp import web

CONFIGS = (("none", 0), ("threads", 1), ("threads", 2), ("processes", 2))
SECONDS = 5


def _burn(password_hash: bytes) -> None:
    """Check a password forever at the lowest priority."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    while True:
        bcrypt.checkpw(b"x" * 20, password_hash)


def _serve(mode: str, count: int, port: int) -> None:
    password_hash = bcrypt.hashpw(b"x" * 20, bcrypt.gensalt(10))
    for _ in range(count):
        if mode == "threads":
            threading.Thread(target=_burn, args=(password_hash,), daemon=True).start()
        else:
            multiprocessing.Process(
                target=_burn, args=(password_hash,), daemon=True
            ).start()

    async def user_board(request: web.Request) -> web.Response:
        return web.Response(text="User Content.")

    app = web.Application()
    app.router.add_get("/", user_board)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _probe(port: int) -> tuple[float, float]:
    """req/s and p99 (ms) of 4 connections for SECONDS."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c4",
            f"-d{SECONDS}s",
            "--latency",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, float(value) * scale


def main() -> int:
    if len(sys.argv) == 4:  # the server side, started by the loop below
        _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
        return 0
    print(f"{os.cpu_count()} cores; probe: wrk, 4 connections, {SECONDS} s")
    for mode, count in CONFIGS:
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.contention", mode, str(count), str(port)],
            start_new_session=True,
        )
        try:
            time.sleep(2)
            rps, p99 = _probe(port)
        finally:
            os.killpg(server.pid, 9)
            server.wait()
        print(f"{count} bcrypt {mode:<9}  {rps:>9,.0f} req/s   p99 {p99:6.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
