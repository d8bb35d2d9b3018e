"""What every `coldrec` command shares: the Typer apps, the console, data-set options and loading."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from coldrec.data import DataError, Dataset, load_dataset

if TYPE_CHECKING:
    from coldrec.parallel import Executor

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
RayOption = typer.Option(None, "--ray", metavar="local|auto|ADDRESS",
                         help="Run the partitioned work as Ray tasks: local starts a Ray instance on this machine; "
                              "auto or ray://HOST:PORT joins a running cluster (coldrec installed on its workers).")
EventsFormatOption = typer.Option("rows", "--events-format", help="rows: one event a record; sequences: a header, "
                                  "then one user a line with their item ids in time order, space-separated.")


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """FIELD=COLUMN pairs, each given alone or several in one value separated by commas."""
    mapping = {}
    for pair in (part for value in pairs for part in value.split(",") if part.strip()):
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


def open_store(target: str | Path, id_key: str | None = None, key_file: Path | None = None):
    """The store at `target`: a state folder (SQLite) or a postgresql:// URL. A problem opening it (a key file
    beside the data, two different keys; for PostgreSQL a missing psycopg or a refused connection) exits with its
    message. Without `id_key` / `key_file`: COLDREC_ID_KEY, else the default key file."""
    from coldrec.serve.store import is_postgres_url
    from coldrec.serve.store import open_store as open_target

    id_key = id_key or os.environ.get("COLDREC_ID_KEY")
    if not is_postgres_url(target):
        try:
            return open_target(target, id_key, key_file=key_file)
        except ValueError as error:
            fail(str(error))
    from coldrec.serve.store.postgres import redacted

    try:
        return open_target(target, id_key, key_file=key_file)
    except ImportError as error:
        fail(f"--store postgresql://... needs psycopg and psycopg_pool (pip install 'coldrec[serve]'): {error}")
    except Exception as error:  # a refused connection, a bad URL, a key problem
        fail(f"cannot open the store at {redacted(str(target))}: {error}")


@contextmanager
def on_cluster(address: str | None) -> Iterator[Executor]:
    """The block's partitioned work (`coldrec.parallel`) on Ray at `address` (`RayOption`), else in this process."""
    from coldrec.parallel import IN_PROCESS, running_on

    if not address:
        yield IN_PROCESS
        return
    try:
        from coldrec.distributed.cluster import RayExecutor

        executor = RayExecutor(address)
    except ImportError as error:
        fail(str(error))
    except Exception as error:  # a cluster that cannot be reached or started
        fail(f"--ray {address}: {error}")
    with executor, running_on(executor):
        console.print(f"on Ray ({executor.cpus} CPUs)")
        yield executor


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def load_shop_or_exit(catalog: Path | None, events: Path | None, profiles: Path | None, catalog_map: list[str],
                      events_map: list[str], profiles_map: list[str], events_format: str, skip_bad: bool) -> Dataset:
    """A shop's own files as a data set (`coldrec.data.shopfiles.load_shop`), each file's load report printed; a
    bad record or a missing column exits with its message."""
    from coldrec.data.shopfiles import load_shop

    if catalog is None or events is None:
        fail("a shop's own data needs both --catalog and --events")
    try:
        ds = load_shop(catalog, events, profiles, catalog_map=parse_mapping(catalog_map),
                       events_map=parse_mapping(events_map), profiles_map=parse_mapping(profiles_map),
                       events_format=events_format, skip_bad=skip_bad)
    except DataError as error:
        fail(f"{error}\n(rerun with --skip-bad to count and skip such rows)")
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    for report in ds.reports:
        console.print(report.summary())
        for example in report.examples:
            console.print(f"  skipped: {example}")
    return ds


def load_encoder_or_exit(name: str):
    """The named text encoder (`coldrec.encode.named`), made this process's default so every model fitted here
    encodes with it; an unknown name or an encoder that cannot load exits with the reason."""
    from coldrec.encode.named import load_named_encoder
    from coldrec.encode.shared import set_default_encoder

    try:
        encoder = load_named_encoder(name)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--encoder") from error
    except (ImportError, OSError) as error:
        fail(f"encoder {name!r} cannot load here: {error}")
    set_default_encoder(encoder)
    return encoder
