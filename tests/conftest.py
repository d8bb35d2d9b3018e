import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA_ROOT = Path(os.environ.get("COLDREC_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _id_key_outside_home(tmp_path_factory):
    """Stores opened without a key create theirs under the test's tmp folder, never in ~/.config (nor a
    developer's own COLDREC_ID_KEY_FILE)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLDREC_ID_KEY_FILE", str(tmp_path_factory.mktemp("keys") / "id.key"))
        yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "amazon14-office").is_dir():
        pytest.skip(f"real data sets not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def office(data_root):
    from coldrec.data import load_dataset

    return load_dataset("amazon14-office", data_root)


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a database on a throwaway PostgreSQL server (tests/postgres.py), started once, on first use; the
    tests asking for it skip where no server can run here, or fail with COLDREC_REQUIRE_POSTGRES=1."""
    from tests.postgres import PostgresServer, Unavailable, unavailable

    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as error:
        unavailable(f"psycopg / psycopg_pool are not installed ({error}): pip install 'coldrec[serve]'")
    try:
        server = PostgresServer()
    except Unavailable as error:
        unavailable(str(error))
    try:
        yield server.start()
    finally:
        server.stop()
