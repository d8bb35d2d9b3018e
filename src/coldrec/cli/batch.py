"""`coldrec batch-recommend`: every known shopper's top-n into a Parquet file, in one process or on Ray."""

from __future__ import annotations

from pathlib import Path

import typer

from coldrec.cli.common import RayOption, app, console, fail, on_cluster, open_store


@app.command("batch-recommend")
def batch_recommend(
    model: Path = typer.Option(..., "--model", help="A folder written by `coldrec build` (its current version), or "
                               "one model directory."),
    out: Path = typer.Option(..., "--out", help="The Parquet file to write: user, rank, item_id, score, reason."),
    store_target: str = typer.Option(None, "--store", help="The store whose shoppers and catalog to use: a state "
                                     "folder or a postgresql://... URL (default: MODEL/state)."),
    n: int = typer.Option(10, "-n", "--n", min=1, max=100, help="Items per shopper."),
    users: Path = typer.Option(None, "--users", help="A file of raw user ids, one a line: only these, written as "
                               "given (default: every user key the store holds, pseudonymised as stored)."),
    partition: int = typer.Option(2_000, "--partition", min=1, help="Shoppers per partition (a Ray task each)."),
    id_key_file: Path = typer.Option(None, "--id-key-file", help="The pseudonymisation key's file, as for "
                                     "`coldrec serve`."),
    ray: str = RayOption,
) -> None:
    """The top-n each shopper would be served now (reasons included), for every shopper the store knows, as one
    Parquet table; the same lists with --ray as without."""
    from coldrec.distributed.batch import batch_recommend as run
    from coldrec.model import ModelDirectoryError
    from coldrec.model.versions import locate

    try:
        versions, version, directory = locate(model)
    except ModelDirectoryError as error:
        fail(str(error))
    target = store_target if store_target is not None else str(model / "state")
    ids = None
    if users is not None:
        if not users.is_file():
            fail(f"--users {users}: no such file")
        ids = [line.strip() for line in users.read_text(encoding="utf-8").splitlines() if line.strip()]
    store = open_store(target, None, id_key_file)
    try:
        with on_cluster(ray) as executor:
            result = run(directory, store, n=n, user_ids=ids, partition_shoppers=partition)
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    result.frame.to_parquet(out, index=False)
    rate = result.shoppers / max(result.seconds, 1e-9)
    console.print(f"wrote {out}: {len(result.frame):,} rows, {result.shoppers:,} shoppers in {result.partitions} "
                  f"partitions on {executor.name}; {result.seconds:.1f} s ({rate:,.0f} shoppers/s)"
                  + (f"; model version {version}" if versions is not None else ""))
