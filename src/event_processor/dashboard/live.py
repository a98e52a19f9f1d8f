"""Run the dashboard while a scenario runs: Rich Live on a terminal, log lines elsewhere."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from types import TracebackType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from event_processor.dashboard.views import compact_line, render_dashboard
from event_processor.metrics.live import LiveMetrics

SVG_WIDTH = 120
DEFAULT_LINE_INTERVAL_S = 5.0


class DashboardRunner:
    """Context manager that shows ``metrics`` until it exits.

    On a terminal a ``rich.live.Live`` redraws the full dashboard ``refresh_per_second``
    times a second; otherwise (CI logs, pipes) a background thread prints one
    ``compact_line`` every ``line_interval_s`` seconds, and a last one on exit.
    """

    def __init__(
        self,
        metrics: LiveMetrics,
        console: Console | None = None,
        refresh_per_second: float = 4,
        *,
        line_interval_s: float = DEFAULT_LINE_INTERVAL_S,
    ) -> None:
        if refresh_per_second <= 0 or line_interval_s <= 0:
            raise ValueError("refresh_per_second and line_interval_s must be > 0")
        self.metrics = metrics
        self.console = console or Console()
        self.refresh_per_second = refresh_per_second
        self.line_interval_s = line_interval_s
        self._live: Live | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def __enter__(self) -> DashboardRunner:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._live is not None or self._thread is not None:
            return
        self._stop.clear()
        if self.interactive:
            self._live = Live(
                console=self.console,
                refresh_per_second=self.refresh_per_second,
                get_renderable=self.render,
            )
            self._live.start(refresh=True)
        else:
            self._thread = threading.Thread(
                target=self._print_lines, name="dashboard-lines", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop refreshing; the final state stays on screen (or in the log)."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()  # renders once more, so the last frame is the final state
        if self._thread is not None:
            thread, self._thread = self._thread, None
            self._stop.set()
            thread.join()
            self._print_line()

    def render(self) -> RenderableType:
        """The dashboard for the current snapshot; never raises into Live's thread."""
        try:
            return render_dashboard(self.metrics.snapshot())
        except Exception as exc:  # a dead refresh thread would freeze the screen silently
            return Text(f"dashboard error: {exc!r}", style="bold red")

    def export_svg(self, path: str | Path, *, title: str = "event-processor") -> Path:
        """Save the current dashboard as an SVG screenshot (for the README)."""
        target = Path(path)
        recorder = Console(
            record=True,
            width=SVG_WIDTH,
            file=io.StringIO(),  # record only; nothing reaches the real terminal
            force_terminal=True,
            color_system="truecolor",  # keep the SLO colours in the capture
        )
        recorder.print(render_dashboard(self.metrics.snapshot()))
        target.parent.mkdir(parents=True, exist_ok=True)
        recorder.save_svg(str(target), title=title)
        return target

    def _print_lines(self) -> None:
        while not self._stop.wait(self.line_interval_s):
            self._print_line()

    def _print_line(self) -> None:
        try:
            line = compact_line(self.metrics.snapshot())
        except Exception as exc:  # keep the loop alive, say what went wrong
            line = f"dashboard error: {exc!r}"
        # out(): no markup, wrapping or highlighting, so the log line stays verbatim.
        self.console.out(line, highlight=False)
