"""What every command shares: the workspace it activates, a progress line on stderr, and the
choice between plain steps (the default: no Prefect server, starts in a second) and a Prefect
flow run (`--prefect`: recorded in the workspace's or PREFECT_API_URL's Prefect)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from pipelines.runner import WARNING_PREFIX, Steps
from pipelines.settings import Workspace


def activate() -> Workspace:
    """The workspace of this process ($NOTALONE_HOME), its folders made and environment set.
    Called once, at the start of a command; everything below receives it."""
    return Workspace.resolve().activate()


def stderr() -> Console:
    return Console(stderr=True)


@contextmanager
def progress_line(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """A spinner line on stderr that each step message replaces."""
    with console.status(title) as status:

        def show(message: str) -> None:
            if message.startswith(WARNING_PREFIX):
                console.print(f"[yellow]{message}[/yellow]")
            else:
                status.update(f"{title}: {message}")

        yield show


def run_steps(
    sequence: Callable[..., Any],
    *,
    flow: Callable[..., Any] | None,
    flow_args: dict[str, Any],
    progress: Callable[[str], None],
    **kwargs: Any,
) -> Any:
    """Run a step sequence directly (`flow` None), or its Prefect flow with the same inputs
    (the flow activates the workspace and runs each step as a task)."""
    if flow is None:
        return sequence(steps=Steps(progress=progress), **kwargs)
    from pipelines.flows import reporting

    with reporting(progress):
        return flow(**flow_args)
