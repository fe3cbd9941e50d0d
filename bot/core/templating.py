"""The one Jinja2 environment: every text lemi writes comes from ``templates/``."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from bot.core.markdown import code, fence, inert


def templates_dir() -> Path:
    package = Path(__file__).resolve().parents[1]  # bot/
    for candidate in (package / "templates", package.parent / "templates"):  # installed wheel, source tree
        if candidate.is_dir():
            return candidate
    raise RuntimeError("lemi's templates/ directory is missing from this installation")


def _yaml_str(value: Any) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value), ensure_ascii=False)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        # only the setup pages are HTML (escaped); the rest is Markdown, YAML, HCL and text,
        # whose values are validated before they get here
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml_str"] = _yaml_str
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False)
    # text from users inside Markdown: no mentions, references, links or markup (bot/markdown.py)
    env.filters["inert"] = inert
    env.filters["code"] = code
    env.filters["fence"] = fence
    return env


def render(template: str, /, **values: Any) -> str:
    return environment().get_template(template).render(**values)
