"""JSON Schemas of the service files and lemi.yml, generated from the models.

Published by ``lemi schema`` and written next to scaffolded files so editors
(yaml-language-server) validate them while the user types. The models stay
the single source: the loader and the schema cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .config import Config
from .spec import EnvironmentFile, ServiceFile

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMAS: dict[str, type[BaseModel]] = {
    "service": ServiceFile,
    "environment": EnvironmentFile,
    "config": Config,
}


def schema_for(kind: str) -> dict[str, Any]:
    model = SCHEMAS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": DIALECT, **schema}


def service_schema() -> dict[str, Any]:
    return schema_for("service")


def environment_schema() -> dict[str, Any]:
    return schema_for("environment")
