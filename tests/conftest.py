import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA_ROOT = Path(os.environ.get("COLDREC_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "amazon14-office").is_dir():
        pytest.skip(f"real data sets not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def office(data_root):
    from coldrec.data import load_dataset

    return load_dataset("amazon14-office", data_root)
