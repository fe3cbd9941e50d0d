"""GitHub's published OpenAPI description, as a request checker for the fake.

The description is ``@octokit/openapi``'s ``generated/api.github.com.json``
(OpenAPI 3.0.3, pinned by tests/npm/package-lock.json). It is parsed once per
process (:func:`spec`, ~0.2 s); JSON Schema validators are built lazily, per
operation, the first time a test needs one.

* :meth:`OpenAPI.match` maps ``(method, concrete path)`` to an operation by its
  path template. Path parameters marked ``x-multi-segment`` (``{path}`` of the
  contents API, ``{ref}`` of ``git/ref/{ref}``, ``commits/{ref}``...) may span
  slashes; when two templates match, the one with more literal segments wins
  (``commits/{ref}/check-runs`` over ``commits/{ref}``). Integer path parameters
  only match digits, as GitHub's router does.
* :meth:`OpenAPI.check` returns the list of :class:`Violation` of one request:
  undocumented path or method, undocumented query parameter or a value of the
  wrong type/enum, a missing required body, a body that is not JSON or does not
  validate against the operation's ``requestBody`` schema. Bodies are checked
  *strictly*: an object property the schema does not declare is a violation
  (GitHub silently ignores it, so it is almost always a typo in the product).
* :meth:`OpenAPI.check_response` validates a response body against the
  documented response schema (the fake uses it on its own answers).
* :meth:`OpenAPI.example` returns a deep copy of the documented example answer.

OpenAPI 3.0 ``nullable: true`` becomes a JSON-Schema ``null`` type, and
``$ref: "#/components/schemas/X"`` is resolved against the document.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema

SPEC_PATH = (
    Path(__file__).resolve().parent.parent
    / "npm"
    / "node_modules"
    / "@octokit"
    / "openapi"
    / "generated"
    / "api.github.com.json"
)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class Violation:
    """One way a request (or a fake's answer) departs from GitHub's API description."""

    method: str
    path: str
    kind: str  # unknown-path | method | query | body | not-implemented | response
    message: str
    operation: str | None = None  # operationId when the path matched

    def __str__(self) -> str:
        op = f" [{self.operation}]" if self.operation else ""
        return f"{self.method} {self.path}{op}: {self.kind}: {self.message}"


@dataclass
class Operation:
    method: str  # upper case
    template: str
    operation_id: str
    raw: dict[str, Any]
    parameters: list[dict[str, Any]]  # $ref-resolved
    multi_segment: frozenset[str]
    integer_params: frozenset[str]
    query: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def request_body(self) -> dict[str, Any] | None:
        return self.raw.get("requestBody")


@dataclass
class Match:
    operation: Operation
    params: dict[str, str]


class _Template:
    def __init__(self, template: str, operations: dict[str, Operation]) -> None:
        self.template = template
        self.operations = operations
        multi = set().union(*(op.multi_segment for op in operations.values())) if operations else set()
        integers = set.intersection(*(set(op.integer_params) for op in operations.values())) if operations else set()
        parts = []
        self.literals = 0
        self.names: list[str] = []
        segments = template.strip("/").split("/")
        for index, segment in enumerate(segments):
            names = re.findall(r"\{([^}]+)\}", segment)
            if not names:
                self.literals += 1
            pattern = ""
            for piece in re.split(r"(\{[^}]+\})", segment):
                if piece.startswith("{") and piece.endswith("}"):
                    name = piece[1:-1]
                    self.names.append(name)
                    if name in multi:
                        # a trailing multi-segment parameter may be empty (GET .../contents/ lists the root)
                        last = index == len(segments) - 1 and segment == piece
                        pattern += f"(?P<{_group(name)}>{'.*' if last else '.+'})"
                    elif name in integers:
                        pattern += f"(?P<{_group(name)}>[0-9]+)"
                    else:
                        pattern += f"(?P<{_group(name)}>[^/]+)"
                else:
                    pattern += re.escape(piece)
            parts.append(pattern)
        self.regex = re.compile("/" + "/".join(parts))

    def match(self, raw_path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(raw_path)
        if found is None:
            return None
        return {name: unquote(found.group(_group(name))) for name in self.names}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


class OpenAPI:
    """One parsed description; thread-safe; validators are compiled on first use."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        with open(path, "rb") as handle:
            self.doc: dict[str, Any] = json.load(handle)
        self._lock = threading.RLock()
        self._templates: list[_Template] | None = None
        self._by_first: dict[str, list[_Template]] = {}
        self._validators: dict[tuple[Any, ...], jsonschema.protocols.Validator] = {}
        self.operations: dict[tuple[str, str], Operation] = {}

    # -- lookup ---------------------------------------------------------------------------

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"external $ref {ref!r}")
            target: Any = self.doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
            seen += 1
            if seen > 50:
                raise ValueError(f"$ref loop at {ref!r}")
        return node

    def _index(self) -> list[_Template]:
        with self._lock:
            if self._templates is not None:
                return self._templates
            templates = []
            for template, item in self.doc["paths"].items():
                shared = [self._resolve(p) for p in item.get("parameters", [])]
                ops = {}
                for method, raw in item.items():
                    if method not in METHODS:
                        continue
                    params = shared + [self._resolve(p) for p in raw.get("parameters", [])]
                    op = Operation(
                        method=method.upper(),
                        template=template,
                        operation_id=raw.get("operationId", f"{method} {template}"),
                        raw=raw,
                        parameters=params,
                        multi_segment=frozenset(
                            p["name"] for p in params if p.get("in") == "path" and p.get("x-multi-segment")
                        ),
                        integer_params=frozenset(
                            p["name"]
                            for p in params
                            if p.get("in") == "path" and self._resolve(p.get("schema", {})).get("type") == "integer"
                        ),
                        query={p["name"]: p for p in params if p.get("in") == "query"},
                    )
                    ops[op.method] = op
                    self.operations[(op.method, template)] = op
                t = _Template(template, ops)
                templates.append(t)
                first = template.strip("/").split("/")[0]
                self._by_first.setdefault("{" if first.startswith("{") else first, []).append(t)
            self._templates = templates
            return templates

    def operation(self, method: str, template: str) -> Operation:
        self._index()
        return self.operations[(method.upper(), template)]

    def match(self, method: str, raw_path: str) -> tuple[Match | None, Violation | None]:
        """The operation serving ``method raw_path`` (raw = still percent-encoded), or why none does."""
        method = method.upper()
        self._index()
        first = raw_path.strip("/").split("/")[0]
        candidates = self._by_first.get(first, []) + self._by_first.get("{", [])
        found: list[tuple[tuple[int, int], _Template, dict[str, str]]] = []
        for t in candidates:
            params = t.match(raw_path)
            if params is None:
                continue
            consumed = sum(v.count("/") for v in params.values())
            found.append(((t.literals, -consumed), t, params))
        if not found:
            return None, Violation(method, raw_path, "unknown-path", "no path of GitHub's REST API matches")
        found.sort(key=lambda entry: entry[0], reverse=True)
        for _, t, params in found:
            op = t.operations.get(method)
            if op is None:
                continue
            # a parameter may only span slashes where this very operation says so
            if any("/" in v for k, v in params.items() if k not in op.multi_segment):
                continue
            return Match(op, params), None
        allowed = sorted({m for _, t, _ in found for m in t.operations})
        return None, Violation(
            method,
            raw_path,
            "method",
            f"{found[0][1].template} has no {method} operation (documented: {', '.join(allowed)})",
        )

    # -- checks ---------------------------------------------------------------------------

    def check(
        self,
        method: str,
        raw_path: str,
        query: Mapping[str, Any] | Iterable[tuple[str, str]] = (),
        body: bytes | str | None = None,
    ) -> list[Violation]:
        """Every violation of one request. ``body``: the raw bytes as sent (b"" or None: no body)."""
        matched, violation = self.match(method, raw_path)
        if violation is not None:
            return [violation]
        assert matched is not None
        return self.check_operation(matched.operation, raw_path, query, body)

    def check_operation(
        self,
        op: Operation,
        raw_path: str,
        query: Mapping[str, Any] | Iterable[tuple[str, str]] = (),
        body: bytes | str | None = None,
    ) -> list[Violation]:
        out: list[Violation] = []

        def add(kind: str, message: str) -> None:
            out.append(Violation(op.method, raw_path, kind, message, op.operation_id))

        items = list(query.items()) if isinstance(query, Mapping) else list(query)
        for name, value in items:
            param = op.query.get(name)
            if param is None:
                documented = ", ".join(sorted(op.query)) or "none"
                add(
                    "query", f"query parameter {name!r} is not documented for this operation (documented: {documented})"
                )
                continue
            error = self._check_query_value(param, value)
            if error:
                add("query", f"query parameter {name}={value!r}: {error}")
        for name, param in op.query.items():
            if param.get("required") and name not in {k for k, _ in items}:
                add("query", f"required query parameter {name!r} is missing")

        if isinstance(body, str):
            body = body.encode()
        rb = op.request_body
        if rb is not None:
            rb = self._resolve(rb)
        if not body:
            if rb is not None and rb.get("required"):
                add("body", "a request body is required")
            return out
        try:
            data = json.loads(body)
        except ValueError as exc:
            add("body", f"request body is not JSON: {exc}")
            return out
        if rb is None:
            if data not in ({}, None, []):
                add("body", f"this operation takes no request body, got {_short(data)}")
            return out
        content = rb.get("content", {})
        if "application/json" not in content:
            add("body", f"request body must be one of {sorted(content)}, not JSON")
            return out
        validator = self._body_validator(op)
        for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            add("body", _describe(error))
        return out

    def check_response(self, op: Operation, status: int, data: Any) -> list[Violation]:
        """Violations of the documented response schema (for the fake's own answers)."""
        validator = self._response_validator(op, status)
        if validator is None:
            return []
        return [
            Violation(op.method, op.template, "response", f"{status}: {_describe(e)}", op.operation_id)
            for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        ]

    def example(self, op: Operation, status: int | str, name: str | None = None) -> Any:
        """Deep copy of the documented example answer (the first one unless ``name``)."""
        response = self._resolve(op.raw["responses"][str(status)])
        examples = response["content"]["application/json"]["examples"]
        chosen = examples[name] if name else next(iter(examples.values()))
        return copy.deepcopy(self._resolve(chosen)["value"])

    def component_example(self, name: str) -> Any:
        return copy.deepcopy(self.doc["components"]["examples"][name]["value"])

    # -- validators -----------------------------------------------------------------------

    def _check_query_value(self, param: dict[str, Any], value: Any) -> str | None:
        schema = self._resolve(param.get("schema", {}))
        kind = schema.get("type")
        coerced: Any = value
        if kind == "integer":
            try:
                coerced = int(value)
            except (TypeError, ValueError):
                return "not an integer"
        elif kind == "number":
            try:
                coerced = float(value)
            except (TypeError, ValueError):
                return "not a number"
        elif kind == "boolean":
            if value not in ("true", "false"):
                return "not a boolean (true/false)"
            coerced = value == "true"
        elif kind == "array":
            coerced = str(value).split(",")
        validator = self._validator(("param", id(param)), schema, strict=False)
        errors = list(validator.iter_errors(coerced))
        return _describe(errors[0]) if errors else None

    def _body_validator(self, op: Operation) -> jsonschema.protocols.Validator:
        schema = self._resolve(op.request_body or {})["content"]["application/json"]["schema"]
        return self._validator(("body", op.method, op.template), schema, strict=True)

    def _response_validator(self, op: Operation, status: int) -> jsonschema.protocols.Validator | None:
        response = op.raw.get("responses", {}).get(str(status))
        if response is None:
            return None
        schema = self._resolve(response).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return None
        return self._validator(("response", op.method, op.template, status), schema, strict=False)

    def _validator(
        self, key: tuple[Any, ...], schema: dict[str, Any], *, strict: bool
    ) -> jsonschema.protocols.Validator:
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                converter = _Converter(self.doc)
                root = {"allOf": [converter.convert(schema, strict)]}
                root["definitions"] = converter.definitions()
                validator = jsonschema.Draft4Validator(root, format_checker=_FORMATS)
                self._validators[key] = validator
            return validator


class _Converter:
    """OpenAPI 3.0 schema -> draft-4 JSON Schema: nullable, local $refs, strict objects."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.done: dict[tuple[str, bool], Any] = {}
        self.pending: list[tuple[str, bool]] = []

    def convert(self, node: Any, strict: bool) -> Any:
        if isinstance(node, list):
            return [self.convert(x, strict) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            prefix = "#/components/schemas/"
            if not ref.startswith(prefix):
                raise ValueError(f"unsupported $ref {ref!r}")
            name = ref[len(prefix) :]
            key = (name, strict)
            if key not in self.done:
                self.done[key] = None
                self.pending.append(key)
            return {"$ref": f"#/definitions/{'strict' if strict else 'loose'}/{_escape(name)}"}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in (
                "description",
                "example",
                "examples",
                "externalDocs",
                "nullable",
                "discriminator",
                "xml",
            ) or key.startswith("x-"):
                continue
            if key == "properties":
                out[key] = {k: self.convert(v, strict) for k, v in value.items()}
            elif key in ("items", "not"):
                out[key] = self.convert(value, strict if key == "items" else False)
            elif key == "additionalProperties" and isinstance(value, dict):
                out[key] = self.convert(value, strict)
            elif key in ("oneOf", "anyOf"):
                # answers: GitHub's own examples often match two oneOf branches (e.g. basic-error
                # and repository-rule-violation-error), so loose schemas read oneOf as anyOf
                out[key if strict else "anyOf"] = [self.convert(v, strict) for v in value]
            elif key == "allOf":
                out[key] = [self.convert(v, False) for v in value]
            else:
                out[key] = copy.deepcopy(value)
        if (
            strict
            and "properties" in out
            and "additionalProperties" not in out
            and not any(k in out for k in ("allOf", "oneOf", "anyOf"))
        ):
            out["additionalProperties"] = False
        if node.get("nullable"):
            if "type" in out:
                out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
                if "enum" in out and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
            else:
                out = {"anyOf": [out, {"type": "null"}]}
        return out

    def definitions(self) -> dict[str, dict[str, Any]]:
        schemas = self.doc["components"]["schemas"]
        while self.pending:
            name, strict = self.pending.pop()
            self.done[(name, strict)] = self.convert(schemas[name], strict)
        out: dict[str, dict[str, Any]] = {"strict": {}, "loose": {}}
        for (name, strict), converted in self.done.items():
            out["strict" if strict else "loose"][_escape(name)] = converted
        return out


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        raise ValueError("not an ISO 8601 date-time such as 2024-01-02T03:04:05Z")
    _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def _describe(error: jsonschema.ValidationError) -> str:
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "(body)"
    if error.validator == "additionalProperties" and error.validator_value is False:
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"{where}: undocumented field(s) {extra} (GitHub would silently ignore them)"
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return f"{where}: {error.message[:200]}; closest: {best.message[:200]}"
    return f"{where}: {error.message[:300]}"


def _short(data: Any) -> str:
    text = json.dumps(data)
    return text if len(text) < 120 else text[:117] + "..."


@functools.cache
def spec() -> OpenAPI:
    """The shared, parsed description (parsed on first use, once per process)."""
    return OpenAPI()
