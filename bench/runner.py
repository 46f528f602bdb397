"""One run: the config, the chosen generator, a scratch folder, the results so far, and
the helpers every phase measures with. A phase that fails is recorded and the run goes
on; Ctrl-C stops everything (servers and generators are stopped by their own `finally`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from . import machine
from .config import BenchConfig
from .load import Generator, LoadResult, LoadRun, LoadSpec, pick_generator
from .profile import Profiler
from .report import Figure, Results
from .servers import Server, bare_server

logger = logging.getLogger("bench")


class Bench:
    def __init__(self, config: BenchConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.generator: Generator = pick_generator(
            config.generator, config.python_processes
        )
        self.profiler = Profiler(config.profile_dir)
        config_dict = {
            k: str(v) if isinstance(v, Path) else v for k, v in _shallow(config)
        }
        self.results = Results(machine.describe(self.generator.name), config_dict)
        self._servers = contextlib.ExitStack()
        self._bare: Server | None = None

    def close(self) -> None:
        try:
            self._servers.close()
        finally:
            self.generator.close()

    def bare(self) -> Server:
        """The bare aiohttp reference app, started at first use and kept until the run
        ends (idle between the phases that measure it): one start instead of one per
        phase."""
        if self._bare is None or self._bare.process.poll() is not None:
            self._bare = self._servers.enter_context(bare_server(self.workdir))
        return self._bare

    # measuring

    def measure(
        self, spec: LoadSpec, server: Server, *, warm: bool = True, settle: bool = True
    ) -> LoadResult:
        """Warm up (unless `warm` is False or the spec uses up tokens), wait for the
        server to be idle (unless `settle` is False: a load runs beside this one), then
        measure, charging the server's CPU over the measurement to the result."""
        if warm and self.config.warmup > 0 and not spec.presents_tokens:
            self.start(dataclasses.replace(spec, duration=self.config.warmup)).result()
        if settle:
            server.wait_idle()
        before = server.cpu_seconds()
        with self.profiler.recording(spec.name, server.process.pid, spec.duration):
            result = self.start(spec).result()
        result.server_cpu_s = server.cpu_seconds() - before
        return self.record(result)

    def start(self, spec: LoadSpec) -> LoadRun:
        logger.info(
            "load: %s (%d connections, %.1f s)",
            spec.name,
            spec.connections,
            spec.duration,
        )
        return self.generator.start(spec)

    @contextlib.contextmanager
    def background(self, spec: LoadSpec) -> Iterator[LoadRun]:
        """A load running while the body measures something else; killed if the body
        fails, otherwise the caller stops it and collects its result."""
        run = self.start(spec)
        try:
            yield run
        except BaseException:
            run.kill()
            raise

    def record(self, result: LoadResult) -> LoadResult:
        self.results.loads.append(result)
        if result.errors:
            self.note(
                f"{result.name}: {result.errors} of {result.requests} requests failed"
            )
        return result

    # recording

    def figure(self, figure: Figure) -> None:
        self.results.figures.append(figure)

    def note(self, text: str) -> None:
        logger.info("note: %s", text)
        self.results.notes.append(text)

    @contextlib.contextmanager
    def phase(self, number: int, what: str) -> Iterator[None]:
        """Run one phase; an exception becomes an error row, not the end of the run."""
        began = time.monotonic()
        logger.info("phase %d: %s", number, what)
        try:
            yield
        except Exception as exc:
            logger.error(
                "phase %d (%s) failed:\n%s", number, what, traceback.format_exc()
            )
            self.results.errors.append(
                f"phase {number} ({what}): {type(exc).__name__}: {exc}"
            )
            self.figure(
                Figure(number, what, f"error: {type(exc).__name__}", passed=False)
            )
        finally:
            logger.info(
                "phase %d (%s) took %.1f s", number, what, time.monotonic() - began
            )


def _shallow(config: BenchConfig) -> list[tuple[str, object]]:
    return [
        (
            f.name,
            dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value,
        )
        for f in dataclasses.fields(config)
        for value in [getattr(config, f.name)]
    ]


def run(config: BenchConfig) -> Results:
    """Every selected phase, in order; the results whatever happened."""
    from . import phases

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        bench = Bench(config, Path(scratch))
        try:
            phases.run_all(bench)
        finally:
            bench.close()
            bench.results.elapsed_s = time.monotonic() - began
    return bench.results
