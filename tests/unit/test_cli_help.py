"""`notalone --help` and each group's help list every command with a one-line summary."""

from __future__ import annotations

import pytest
import typer

from pipelines.cli import app


def _commands(group, prefix: str = "") -> list[tuple[str, object]]:
    """(name, command) of every command under a click group, sub-groups included."""
    found = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if hasattr(command, "commands"):  # a group (Typer has its own click classes)
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_found():
    names = {name for name, _ in COMMANDS}
    assert {"score", "train", "backtest", "ingest moodle", "app invite"} <= names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_summary_is_one_sentence_on_one_line(name, command):
    # The command list shows the help's first paragraph as it is written: a line break inside it
    # shows up as a broken line in `notalone --help`.
    summary = (command.help or "").strip().split("\n\n")[0]
    assert summary, f"{name} has no help"
    assert "\n" not in summary, f"{name}: first paragraph spans lines: {summary!r}"
