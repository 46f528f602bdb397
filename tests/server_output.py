"""Reading a server process's output in the background: its pipe never fills, and tests
can look at what it logged."""

from __future__ import annotations

import threading
from typing import IO


class Output:
    """Drains a stream (a server's stdout) in a thread and keeps its lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self.lines.append(line)
        except ValueError:  # the stream was closed as the server stopped
            pass

    @property
    def text(self) -> str:
        return "".join(self.lines)
