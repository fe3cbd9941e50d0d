"""JSON Schemas of the service files and lemi.yml, generated from the models.

Published by ``lemi schema`` and written next to scaffolded files so editors
(yaml-language-server) validate them while the user types. The models stay
the single source: the loader and the schema cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bot.core.config import Config
from bot.core.spec import EnvironmentFile, ServiceFile

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMAS: dict[str, type[BaseModel]] = {
    "service": ServiceFile,
    "environment": EnvironmentFile,
    "config": Config,
}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a model, as lemi publishes it."""
    return {"$schema": DIALECT, **model.model_json_schema(by_alias=True, mode="validation")}


def schema_for(kind: str) -> dict[str, Any]:
    return json_schema(SCHEMAS[kind])
