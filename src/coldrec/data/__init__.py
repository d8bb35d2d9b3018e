"""Loading, validating and holding catalogs, event logs and user profiles."""

from coldrec.data.catalog import ItemCatalog, TextTemplate
from coldrec.data.context import UserContext
from coldrec.data.datasets import (
    Dataset,
    available_datasets,
    default_data_root,
    load_dataset,
)
from coldrec.data.errors import DataError, LoadReport
from coldrec.data.importer import import_catalog, import_events
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.data.profile import UserProfile

__all__ = [
    "DataError",
    "Dataset",
    "EventType",
    "InteractionLog",
    "ItemCatalog",
    "LoadReport",
    "TextTemplate",
    "UserContext",
    "UserProfile",
    "available_datasets",
    "default_data_root",
    "import_catalog",
    "import_events",
    "load_dataset",
]
