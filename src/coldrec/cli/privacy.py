"""`coldrec rotate-key`: the store's pseudonymous keys re-keyed to a new key link, while the service answers."""

from __future__ import annotations

from pathlib import Path

import typer

from coldrec.cli.common import app, console, fail, open_store


@app.command("rotate-key")
def rotate_key(
    store_target: str = typer.Option(..., "--store", help="The store: a state folder (SQLite) or a "
                                     "postgresql://... URL, the one the service writes."),
    id_key_file: Path = typer.Option(None, "--id-key-file", help="The pseudonymisation key's file, as for "
                                     "`coldrec serve` (default: $COLDREC_ID_KEY_FILE or ~/.config/coldrec/id.key)."),
) -> None:
    """Re-key every stored user and session key with a new random key link, in one transaction, without losing
    anyone's history: the key file gets the new link first (resumable after a crash), every running server
    process and host picks it up from the store's key version. Copies of the key as it was no longer link the
    store's keys to ids (README, "Privacy")."""
    import os

    from coldrec.serve.privacy import default_key_file
    from coldrec.serve.store.keys import KeyVersionError
    from coldrec.serve.store.keys import rotate_key as rotate

    if os.environ.get("COLDREC_ID_KEY"):
        fail("COLDREC_ID_KEY holds the key as a value, which a rotation cannot rewrite: keep the key in a file "
             "(--id-key-file, COLDREC_ID_KEY_FILE) to rotate it")
    key_file = id_key_file or default_key_file()
    if not key_file.is_file():
        fail(f"{key_file}: no pseudonymisation key file there; give the service's with --id-key-file")
    store = open_store(store_target, None, key_file)
    try:
        rotation = rotate(store, key_file)
    except KeyVersionError as error:
        fail(str(error))
    finally:
        store.close()
    console.print(f"rotated the pseudonymisation key: version {rotation.version_before} -> {rotation.version}, "
                  f"{rotation.keys:,} stored keys re-keyed; {key_file} holds the new chain")
