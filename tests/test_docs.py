"""Every route and every command is documented somewhere under docs/."""

from __future__ import annotations

from pathlib import Path

import click

from riverbed.cli import cli
from riverbed.server.app import endpoints

DOCS = Path(__file__).parent.parent / "docs"


def all_docs() -> str:
    return "\n".join(p.read_text() for p in DOCS.rglob("*.md"))


def test_every_route_is_documented() -> None:
    text = all_docs()
    missing = [f"{e.method} {e.path}" for e in endpoints() if f"{e.method} {e.path}" not in text]
    assert missing == [], f"document these routes in docs/*.md (as `METHOD /path`): {missing}"


def commands(group: click.Group, prefix: str = "riverbed") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            names.extend(commands(command, f"{prefix} {name}"))
    return names


def test_every_command_is_documented() -> None:
    text = all_docs()
    missing = [c for c in commands(cli) if c not in text]
    assert missing == [], f"document these commands in docs/cli.md: {missing}"
