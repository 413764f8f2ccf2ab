"""How a step sequence runs its steps: one sequence for the CLI, the flows and the tests.

A step sequence (`train_steps`, `score_steps`, ...) calls each of its steps through a `Steps`
object. `Steps` reports the step to the progress callback, times it, and hands it to a *runner*:
`run_directly` calls the function (the CLI's default and the tests'); `pipelines.flows` passes a
runner that makes each step a Prefect task. So every path runs the very same code in the same
order, and only the flows know Prefect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
# A progress callback receives step messages; those starting with WARNING_PREFIX should stay
# visible (a command's spinner replaces the others).
Progress = Callable[[str], None]
WARNING_PREFIX = "warning: "


class StepRunner(Protocol):
    """Runs `func(*args, **kwargs)` as the step `name`; `io` steps read or write a store and
    may be retried on a transient error."""

    def __call__(
        self, name: str, func: Callable[..., T], *args: Any, io: bool = False, **kwargs: Any
    ) -> T: ...


def run_directly(
    name: str, func: Callable[..., T], *args: Any, io: bool = False, **kwargs: Any
) -> T:
    """The plain runner: call the step."""
    return func(*args, **kwargs)


def no_progress(_message: str) -> None:
    return None


@dataclass
class Steps:
    """The runner, the progress callback and the seconds (wall and CPU) each step took."""

    runner: StepRunner = run_directly
    progress: Progress = no_progress
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def __call__(
        self,
        name: str,
        note: str | None,
        func: Callable[..., T],
        *args: Any,
        io: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run one step: say `note` (when given), run it through the runner, record its time."""
        if note:
            self.progress(note)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = self.runner(name, func, *args, io=io, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 3)
        self.cpu_seconds[name] = round(time.process_time() - cpu_started, 3)
        return result

    def say(self, message: str) -> None:
        self.progress(message)
