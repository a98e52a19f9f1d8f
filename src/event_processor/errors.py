"""User-facing errors: one line naming the component and the fix."""

from __future__ import annotations


class EventProcessorError(Exception):
    """An error the user can fix; the CLI prints it as one line and exits non-zero."""

    exit_code = 2

    def __init__(self, component: str, problem: str, fix: str | None = None) -> None:
        self.component = component
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.component}: {self.problem}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class ConfigError(EventProcessorError):
    """Bad configuration or command-line input."""


class StackError(EventProcessorError):
    """A service of the stack could not be started, reached or stopped."""

    exit_code = 3
