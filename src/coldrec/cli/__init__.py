"""The `coldrec` command line: one Typer app; each module registers its commands."""

from __future__ import annotations

from coldrec.cli import batch, build, data, evaluate, privacy, service, versions  # noqa: F401 - registers the commands
from coldrec.cli.common import app, console

__all__ = ["app", "console"]
