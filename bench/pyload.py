"""The Python fallback generator, for machines without wrk: `processes` processes, each an
asyncio loop driving raw keep-alive sockets through `asyncio.Protocol` (no HTTP client
library: parsing a status line and Content-Length is all a benchmark needs). It uses far
more CPU per request than wrk, which is why wrk is preferred: on 2 cores this generator
competes with the server for CPU. Run as `python -m bench.pyload '<job json>'`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import multiprocessing
import multiprocessing.synchronize
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .load import RESULT_MARK, LoadRun, LoadSpec

REPO = Path(__file__).resolve().parent.parent
SUCCESSOR = re.compile(rb'"refreshToken":\s*"([^"]+)"')
CONNECT_RETRY_S = 0.05


class PythonGenerator:
    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self.name = f"python ({self.processes} processes, asyncio raw sockets)"

    def start(self, spec: LoadSpec) -> LoadRun:
        job = job_of(spec, min(self.processes, spec.connections))
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.pyload", json.dumps(job)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_hold_sigint,
        )
        return LoadRun(spec, "python", process)

    def close(self) -> None:
        pass


def _hold_sigint() -> None:
    """Start the generator with SIGINT blocked: a stop sent while the interpreter still
    starts stays pending (the mask survives exec) instead of killing it with no result;
    `main` unblocks it once its handler is in place."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def job_of(spec: LoadSpec, processes: int) -> dict:
    url = urlsplit(spec.url)
    forwarded = None
    if spec.forwarded:
        forwarded = [int(ipaddress.IPv4Address(spec.forwarded[0])), spec.forwarded[1]]
    return {
        "host": url.hostname,
        "port": url.port,
        "method": spec.method,
        "path": spec.path,
        "headers": list(spec.all_headers()),
        "body": spec.body,
        "token_file": str(spec.token_file) if spec.token_file else None,
        "access_tokens": str(spec.access_tokens) if spec.access_tokens else None,
        "junk_paths": list(spec.junk_paths),
        "forwarded": forwarded,
        "expected": list(spec.expected),
        "duration": spec.duration,
        "connections": spec.connections,
        "processes": processes,
    }


class Requests:
    """The bytes of each next request: fixed, or built per request (see LoadSpec)."""

    def __init__(self, job: dict, index: int) -> None:
        self._job, self._index, self._share = job, index, job["processes"]
        self._headers = "".join(
            f"{name}: {value}\r\n" for name, value in job["headers"]
        ).encode()
        self._body = job["body"].encode() if job["body"] is not None else None
        self._fixed = self._build(job["method"], job["path"], b"", self._body)
        self.tokens: deque[bytes] | None = None
        self.access: list[bytes] | None = None
        self._last = b""
        self.sent = 0
        self.repeated = 0
        if job["token_file"]:
            self.tokens = deque(self._lines(job["token_file"]))
        if job["access_tokens"]:
            self.access = self._lines(job["access_tokens"])

    def _lines(self, path: str) -> list[bytes]:
        return Path(path).read_bytes().split()[self._index :: self._share]

    def _build(self, method: str, path: str, extra: bytes, body: bytes | None) -> bytes:
        job = self._job
        head = f"{method} {path} HTTP/1.1\r\nHost: {job['host']}:{job['port']}\r\n"
        head_bytes = head.encode() + self._headers + extra
        if body is None:
            return head_bytes + b"\r\n"
        return head_bytes + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def next(self) -> bytes:
        job = self._job
        self.sent += 1
        extra = b""
        if job["forwarded"]:
            first, size = job["forwarded"]
            at = first + (self.sent * self._share + self._index) % size
            extra += (
                b"X-Forwarded-For: %s\r\n" % str(ipaddress.IPv4Address(at)).encode()
            )
        if self.access is not None:
            if self.sent > len(self.access):
                self.repeated += 1
            token = self.access[(self.sent - 1) % len(self.access)]
            extra += b"x-access-token: " + token + b"\r\n"
            return self._build(job["method"], job["path"], extra, None)
        if self.tokens is not None:
            if self.tokens:
                self._last = self.tokens.popleft()
            else:
                self.repeated += 1
            body = b'{"refreshToken": "' + self._last + b'"}'
            return self._build(job["method"], job["path"], extra, body)
        if job["junk_paths"]:
            path = job["junk_paths"][self.sent % len(job["junk_paths"])]
            body = b'{"refreshToken": "' + secrets.token_hex(22)[:43].encode() + b'"}'
            return self._build("POST", path, extra, body)
        if extra:
            return self._build(job["method"], job["path"], extra, self._body)
        return self._fixed

    def answered(self, status: int, body: bytes) -> None:
        """Keep the successor a refresh returned: the next fresh token."""
        if self.tokens is not None and status == 200:
            match = SUCCESSOR.search(body)
            if match:
                self.tokens.append(match.group(1))


class Client(asyncio.Protocol):
    """One keep-alive connection, one request in flight."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        total = end + 4 + content_length(head)
        if len(self.buffer) < total:
            return
        status, body = int(head[9:12]), bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


def content_length(head: bytes) -> int:
    """Content-Length of a lower-cased response head (0 when absent)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else None])


@dataclass
class Tally:
    expected: frozenset[int] = frozenset()
    latencies_us: list[int] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def record(self, started_ns: int, status: int) -> None:
        self.latencies_us.append((time.perf_counter_ns() - started_ns) // 1000)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 400 and status not in self.expected:
            self.errors += 1


async def drive_connection(
    job: dict, requests: Requests, tally: Tally, running: list[bool]
) -> None:
    loop = asyncio.get_running_loop()
    while running[0]:
        try:
            transport, client = await loop.create_connection(
                Client, job["host"], job["port"]
            )
        except OSError:
            tally.errors += 1
            await asyncio.sleep(CONNECT_RETRY_S)
            continue
        try:
            while running[0]:
                started = time.perf_counter_ns()
                status, body = await client.exchange(requests.next())
                tally.record(started, status)
                requests.answered(status, body)
        except ConnectionError:
            tally.errors += 1
        finally:
            transport.close()


async def drive(job: dict, index: int, stop: multiprocessing.synchronize.Event) -> dict:
    """This process's share of the connections, until the duration is over or `stop`."""
    share = job["connections"] // job["processes"]
    share += index < job["connections"] % job["processes"]
    requests, running = Requests(job, index), [True]
    tally = Tally(frozenset(job["expected"]))
    started = time.monotonic()
    tasks = [
        asyncio.create_task(drive_connection(job, requests, tally, running))
        for _ in range(share)
    ]
    deadline = started + job["duration"]
    while time.monotonic() < deadline and not stop.is_set():
        await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    running[0] = False
    _, late = await asyncio.wait(tasks, timeout=2)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return {
        "started": started,
        "ended": time.monotonic(),
        "latencies_us": tally.latencies_us,
        "errors": tally.errors,
        "statuses": tally.statuses,
        "repeated": requests.repeated,
    }


def worker(job: dict, index: int, stop: multiprocessing.synchronize.Event, out) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    result = asyncio.run(drive(job, index, stop))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    out.send(result)
    out.close()


def merge(results: list[dict]) -> dict:
    latencies = sorted(value for r in results for value in r["latencies_us"])
    duration = max(r["ended"] for r in results) - min(r["started"] for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[str(status)] = statuses.get(str(status), 0) + count

    def percentile(p: float) -> int:
        return (
            latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))]
            if latencies
            else 0
        )

    return {
        "requests": len(latencies),
        "errors": sum(r["errors"] for r in results),
        "duration_s": duration,
        "p50_us": percentile(50),
        "p90_us": percentile(90),
        "p99_us": percentile(99),
        "max_us": latencies[-1] if latencies else 0,
        "mean_us": sum(latencies) / len(latencies) if latencies else 0,
        "cpu_s": sum(r["cpu_s"] for r in results),
        "details": {
            "statuses": statuses,
            "limited": statuses.get("429", 0),
            "repeated": sum(r["repeated"] for r in results),
        },
    }


def main(argv: list[str]) -> None:
    job = json.loads(argv[1])
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see _hold_sigint
    pipes, workers = [], []
    for index in range(job["processes"]):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=worker, args=(job, index, stop, sender))
        process.start()
        sender.close()
        pipes.append(receiver)
        workers.append(process)
    results = [pipe.recv() for pipe in pipes]
    for process in workers:
        process.join()
    print(RESULT_MARK + json.dumps(merge(results)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
