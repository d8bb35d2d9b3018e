"""What every `coldrec` command shares: the Typer apps, the console, data-set options and loading."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from coldrec.data import DataError, Dataset, load_dataset

app = typer.Typer(help="coldrec: search and recommendation from a shopper's first visit.", no_args_is_help=True)
data_app = typer.Typer(help="Load, validate and describe data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
if not console.is_terminal and console.width < 120:
    console = Console(width=120)  # logs and CI: keep report tables on one line per row

DataOption = typer.Option(None, "--data",
                          help="Folder holding the data sets (default: $COLDREC_DATA or ../shared/data).")
SkipBadOption = typer.Option(False, "--skip-bad",
                             help="Count and skip malformed rows instead of stopping at the first.")


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected FIELD=COLUMN, got {pair!r}", param_hint="--map")
        field, column = pair.split("=", 1)
        mapping[field.strip()] = column.strip()
    return mapping


def load_or_exit(name: str, root: Path | None, skip_bad: bool) -> Dataset:
    try:
        return load_dataset(name, root, skip_bad=skip_bad)
    except DataError as error:
        console.print(f"[red]error:[/red] {error}\n(rerun with --skip-bad to count and skip such rows)")
        raise typer.Exit(2) from error
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


def open_store(state_dir: Path, id_key: str | None = None, key_file: Path | None = None):
    """The store in `state_dir`; a key problem (a key file beside the data, two different keys) exits with its
    message. Without `id_key` / `key_file`: COLDREC_ID_KEY, else the default key file."""
    from coldrec.serve.store import Store

    try:
        return Store.open(state_dir, id_key or os.environ.get("COLDREC_ID_KEY"), key_file=key_file)
    except ValueError as error:
        fail(str(error))


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)
