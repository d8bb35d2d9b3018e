"""`coldrec serve --workers N`: N server processes on one port, one engine each, one shared store.

One process's engine work is serialised (the engine's lock, and Python's), so throughput past
one core needs processes. uvicorn spawns N workers on one listening socket; each loads the saved
engine and opens the same SQLite store. Events and profiles are read from the store on every
request, and item writes reach every engine through the store's items_version (`CatalogSync`),
so any worker may answer any request. Each worker follows the model folder's current version on its own
(`coldrec.serve.sync.LiveEngine`): a retrain or a rollback reaches every worker within a second or two, with no
restart. The parent hands the model folder (a versions folder, or one model directory) and the settings over
in COLDREC_SERVE_WORKER (JSON); the keys travel in their usual variables (COLDREC_ID_KEY,
COLDREC_API_KEY, COLDREC_READ_KEY), never in that JSON.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from coldrec.serve.settings import SECRET_VARIABLES, Settings

ENV = "COLDREC_SERVE_WORKER"


def worker_environment(model_dir: Path, settings: Settings, access_log: bool,
                       store_url: str | None = None) -> dict[str, str]:
    """The variables a worker needs: its config, plus the keys (taken from `settings`, which may hold CLI values).
    `model_dir`: a versions folder (the workers follow its current version) or one model directory; `store_url`:
    a PostgreSQL store's URL (None: the SQLite store in the settings' state folder)."""
    config = {
        "model": str(Path(model_dir).resolve()),
        "store": store_url,
        "settings": settings.model_dump(mode="json", exclude=set(SECRET_VARIABLES)),
        "access_log": access_log,
    }
    env = {ENV: json.dumps(config)}
    for field, variable in SECRET_VARIABLES.items():
        secret = getattr(settings, field)
        if secret is not None:
            env[variable] = secret.get_secret_value()
    return env


def create_worker_app():
    """The app of one worker process (uvicorn's factory)."""
    from coldrec.model.versions import locate
    from coldrec.serve.app import create_app, freeze_startup_objects
    from coldrec.serve.engine import Engine
    from coldrec.serve.store import open_store

    config = json.loads(os.environ[ENV])
    logging.basicConfig(level=logging.INFO if config["access_log"] else logging.WARNING,
                        format=f"%(asctime)s [{os.getpid()}] %(name)s %(message)s")
    settings = Settings.from_env(**config["settings"])
    store = open_store(config.get("store") or settings.state_dir,
                       settings.id_key.get_secret_value() if settings.id_key else None, key_file=settings.id_key_file)
    versions, version, directory = locate(Path(config["model"]))
    engine = Engine.load(directory)
    app = create_app(engine, store, settings, versions, version)
    freeze_startup_objects()
    return app
