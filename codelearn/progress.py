"""Progress as plain lines, for logs and for stderr that is not a terminal (cron, CI, a pipe).

A progress bar needs a terminal; a log needs lines a person can read later. `ProgressLog` is a
`progress(stage, done, total, detail="")` callback that writes one line when a stage starts and
then one every `interval` seconds while the stage goes on. A background thread keeps the lines
coming when no call arrives, so a step that never ends still shows as stuck, with how long, and
watch functions registered with it can raise a warning (once each) while the work is stuck.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Check = Callable[[], "str | None"]


def time_left(elapsed: float, done: int, total: int, budget: float = 0.0) -> float | None:
    """Seconds until `total` at the pace so far, or until the `budget` ends if sooner (None before
    anything is done)."""
    if not done:
        return None
    left = elapsed / done * (total - done)
    return max(0.0, min(left, budget - elapsed) if budget else left)


def duration(seconds: float) -> str:
    """90 -> '1m30s', 4000 -> '1h06m'."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
    """Plain progress lines through `emit`; warnings from the watch checks through `warn`."""

    def __init__(self, emit: Callable[[str], None], interval: float = 60.0,
                 warn: Callable[[str], None] | None = None, tick: float | None = None) -> None:
        self.emit, self.warn, self.interval = emit, warn or emit, interval
        self.checks: list[Check] = []
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._state: tuple[str, int, int | None, str] | None = None
        self._stage_started = self._last_change = self._last_line = time.monotonic()
        self._stop = threading.Event()
        tick = tick or min(5.0, interval / 4)
        self._thread = threading.Thread(target=self._run, args=(tick,), name="progress-log", daemon=True)
        self._thread.start()

    def __call__(self, stage: str, done: int, total: int | None, detail: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            new_stage = self._state is None or self._state[0] != stage
            if new_stage:
                self._stage_started = now
            if self._state != (stage, done, total, detail):
                self._last_change = now
            self._state = (stage, done, total, detail)
            if new_stage or now - self._last_line >= self.interval:
                self._write(now)

    def watch(self, check: Check) -> None:
        """Run `check` on every tick; the first time it returns a message, warn with it."""
        self.checks.append(check)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> ProgressLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self, now: float | None = None) -> str:
        """The current state as one line."""
        now = time.monotonic() if now is None else now
        if self._state is None:
            return "starting"
        stage, done, total, detail = self._state
        parts = [f"{stage}: {done}/{total}" if total else f"{stage}: {done}" if done else stage]
        if detail:
            parts.append(detail)
        elapsed = now - self._stage_started
        if total and done and "eta" not in detail:
            parts.append(f"eta {duration(time_left(elapsed, done, total))}")
        parts.append(f"{duration(elapsed)} in this stage")
        if now - self._last_change >= self.interval:
            parts.append(f"no progress for {duration(now - self._last_change)}")
        return " · ".join(parts)

    def _write(self, now: float) -> None:
        self._last_line = now
        self.emit(self.line(now))

    def _run(self, tick: float) -> None:
        while not self._stop.wait(tick):
            with self._lock:
                now = time.monotonic()
                if self._state is not None and now - self._last_line >= self.interval:
                    self._write(now)
            for check in list(self.checks):
                message = check()
                if message and message not in self.warnings:
                    self.warnings.append(message)
                    self.warn(message)
