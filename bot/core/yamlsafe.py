"""Bounded, position-keeping YAML loading for every file lemi reads.

PyYAML's ``safe_load`` is safe from code execution, but not from a document
that is large, deeply nested or a "billion laughs" of aliases, and it loses
where each value came from. This module composes the node graph with caps on
size, depth, aliases and total nodes, then builds plain Python values itself,
recording the line and column of every key and value so that a later
validation error can point at the exact spot. It also refuses what has no
place in a lemi file: custom or Python tags, merge keys, duplicate keys,
non-string keys and multi-document streams; and every scalar YAML 1.1 would
turn into something lemi cannot represent or should not pay to build (an
impossible date, a number hundreds of digits long, a base-60 number such as
``1:30``), so that no error of PyYAML's constructors escapes :func:`load`.
Scalars are checked as they are composed: a poison value is refused where it
is read, before the rest of the file is parsed.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.core.problems import Invalid, Problem, dotted

Path = tuple[Any, ...]

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"
MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = {STR, INT, FLOAT, BOOL, NULL, TIMESTAMP}
# the text YAML 1.1 reads as each tag (checked for a value tagged explicitly, e.g. `!!int foo`)
_PATTERNS = {
    tag: regexp
    for resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.values()
    for tag, regexp in resolvers
    if tag in _SCALAR_TAGS
}
# Longer numbers and dates are refused, not built: no lemi value needs more, and building
# one can cost more than its length (Python refuses ints over 4,300 digits; a base-60 one
# is quadratic). A string of digits is quoted.
MAX_NUMBER_TEXT = 40


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 256 * 1024
    max_depth: int = 20
    max_aliases: int = 16
    max_nodes: int = 20_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Scalar:
    """How a non-string scalar was written, to explain a type error."""

    tag: str
    text: str
    quoted: bool


@dataclass
class Document:
    file: str
    value: Any
    # position of the value at a path, and of the key that introduces it
    value_pos: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_pos: dict[Path, tuple[int, int]] = field(default_factory=dict)
    scalars: dict[Path, Scalar] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Line and column for a path; falls back to the nearest enclosing node."""
        path = tuple(path)
        if key and path in self.key_pos:
            return self.key_pos[path]
        while path:
            if path in self.value_pos:
                return self.value_pos[path]
            if path in self.key_pos:
                return self.key_pos[path]
            path = path[:-1]
        return self.value_pos.get((), (1, 1))

    def problem(self, path: Path, message: str, hint: str = "", *, key: bool = False) -> Problem:
        line, column = self.position(path, key=key)
        return Problem(self.file, message, line, column, dotted(path), hint)


class _Refused(Exception):
    def __init__(self, message: str, mark: Any, hint: str = "", path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.hint = hint
        self.path = path


class _Key:
    """In a composer's path: the node being composed is a map's key (its text comes with it)."""


_KEY = _Key()


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts depth and aliases as it goes, and checks each
    scalar as soon as it is read (keeping the path to it for the problem)."""

    def __init__(self, stream: str, limits: Limits) -> None:
        self._limits = limits
        self._depth = 0
        self._aliases = 0
        self._nodes = 0
        self._path: list[Any] = []
        super().__init__(stream)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        """The scanner's ``[`` or ``{``: refused past the depth cap here already, because the
        scanner looks up to 1,024 characters ahead for a key and, for every token it reads,
        walks every open flow level (a line of ``[[[[...`` cost half a second)."""
        if self.flow_level >= self._limits.max_depth:
            raise _Refused(
                f"nested deeper than {self._limits.max_depth} levels",
                self.get_mark(),
                "lemi files are shallow; check the indentation",
            )
        super().fetch_flow_collection_start(TokenClass)

    def _mark(self) -> Any:
        """Where the next event starts (PyYAML's parser is untyped)."""
        return self.peek_event().start_mark  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise _Refused(
                    f"more than {self._limits.max_aliases} YAML aliases (*name)",
                    self._mark(),
                    "write the values out instead of repeating them through anchors and aliases",
                )
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > self._limits.max_nodes:
            raise _Refused(
                f"the document has more than {self._limits.max_nodes} values",
                self._mark(),
                "lemi files are a few dozen lines; check that the right file is named",
            )
        self._depth += 1
        if parent is not None:
            self._path.append(_segment(parent, index))
        try:
            if self._depth > self._limits.max_depth:
                raise _Refused(
                    f"nested deeper than {self._limits.max_depth} levels",
                    self._mark(),
                    "lemi files are shallow; check the indentation",
                )
            node = super().compose_node(parent, index)
            if isinstance(node, yaml.ScalarNode):
                self._check(node)
            return node
        finally:
            self._depth -= 1
            if parent is not None:
                self._path.pop()

    def _check(self, node: yaml.ScalarNode) -> None:
        is_key = bool(self._path) and self._path[-1] is _KEY
        try:
            if is_key:
                _check_key(node)
            else:
                _scalar_value(node)
        except _Refused as exc:
            parts = self._path[:-1] + [node.value] if is_key else self._path
            exc.path = tuple("?" if part is _KEY else part for part in parts)
            raise


def _segment(parent: yaml.Node, index: Any) -> Any:
    """What a child of ``parent`` adds to the path: a key's text, a list index, or _KEY."""
    if isinstance(parent, yaml.MappingNode):
        if index is None:
            return _KEY
        return index.value if isinstance(index, yaml.ScalarNode) else "?"
    return index


_constructor = yaml.SafeLoader("")  # only its scalar constructors are used
_CONSTRUCT = {
    BOOL: _constructor.construct_yaml_bool,
    INT: _constructor.construct_yaml_int,
    FLOAT: _constructor.construct_yaml_float,
    TIMESTAMP: _constructor.construct_yaml_timestamp,
}


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _shown(text: str) -> str:
    """A scalar's text for a message: quoted, and cut short when it is long."""
    if len(text) <= MAX_NUMBER_TEXT:
        return repr(text)
    return f"{text[:MAX_NUMBER_TEXT]!r}... ({len(text):,} characters)"


def _quote_it(text: str, why: str = "") -> str:
    """'quote it: "1:30"' (just 'quote it' when the text is long or would need escapes)."""
    plain = len(text) <= MAX_NUMBER_TEXT and '"' not in text and "\\" not in text
    return (f'quote it: "{text}"' if plain else "quote it") + (f"; {why}" if why else "")


def _bad_tag(node: yaml.Node) -> _Refused:
    tag = node.tag
    short = tag.replace("tag:yaml.org,2002:", "!!")
    if short == "!!merge":
        return _Refused(
            "YAML merge keys (<<) are not supported in lemi files",
            node.start_mark,
            "write the keys out in full",
        )
    return _Refused(
        f"the YAML tag {short} is not allowed in lemi files",
        node.start_mark,
        "remove the tag; lemi files hold only plain strings, numbers, booleans, lists and maps",
    )


def _check_key(node: yaml.ScalarNode) -> None:
    """A key is a name: YAML must read it as a string (it is never built as anything else)."""
    if node.tag == STR:
        return
    if node.tag not in _SCALAR_TAGS:
        raise _bad_tag(node)
    raise _Refused(
        f"the key {_shown(node.value)} is read by YAML as a {_kind(node.tag)}, not as a name",
        node.start_mark,
        _quote_it(node.value),
    )


def _scalar_value(node: yaml.ScalarNode) -> Any:
    """The Python value of a scalar, or :class:`_Refused` for one YAML 1.1 reads as
    something lemi cannot represent or would pay too much to build."""
    tag, text = node.tag, node.value
    if tag == STR:
        return text
    if tag not in _SCALAR_TAGS:
        raise _bad_tag(node)
    short = tag.replace("tag:yaml.org,2002:", "!!")
    if not _PATTERNS[tag].fullmatch(text):  # only an explicit tag can get here: `!!int foo`
        raise _Refused(
            f"{_shown(text)} is tagged {short} but is not a {_kind(tag)}",
            node.start_mark,
            "remove the tag; lemi files need no tags",
        )
    if tag in (INT, FLOAT) and ":" in text:
        raise _Refused(
            f"{_shown(text)} is read by YAML as a base-60 (sexagesimal) number",
            node.start_mark,
            _quote_it(text, "YAML 1.1 reads it as a base-60 number"),
        )
    if tag in (INT, FLOAT, TIMESTAMP) and len(text) > MAX_NUMBER_TEXT:
        raise _Refused(
            f"{_shown(text)} is read by YAML as a {_kind(tag)}, longer than the "
            f"{MAX_NUMBER_TEXT} characters lemi reads",
            node.start_mark,
            "quote it if it is text",
        )
    if tag == NULL:
        return None
    try:
        return _CONSTRUCT[tag](node)
    except Exception as exc:  # noqa: BLE001 - no constructor error (ValueError, OverflowError, ...) escapes load
        if tag == TIMESTAMP:
            # datetime's own words when they are plain ("day is out of range for month")
            why = f" ({exc})" if isinstance(exc, ValueError) and len(str(exc)) <= 40 else ""
            raise _Refused(
                f"{_shown(text)} is read by YAML as a date, but it is not a valid one{why}",
                node.start_mark,
                _quote_it(text),
            ) from None
        raise _Refused(
            f"{_shown(text)} is read by YAML as a {_kind(tag)}, but it cannot be built as one",
            node.start_mark,
            _quote_it(text) + " if it is text",
        ) from None


class _Builder:
    def __init__(self, doc: Document, limits: Limits) -> None:
        self.doc = doc
        self.limits = limits
        self.nodes = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise _Refused(
                f"the document expands to more than {self.limits.max_nodes} values",
                node.start_mark,
                "remove repeated anchors and aliases",
            )
        self.doc.value_pos.setdefault(path, _pos(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            if node.tag != MAP:
                raise _bad_tag(node)
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != SEQ:
                raise _bad_tag(node)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                raise _bad_tag(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(
                    "a key must be a plain name, not a list or a map",
                    key_node.start_mark,
                    "use a simple name before the colon",
                )
            try:
                _check_key(key_node)
            except _Refused as exc:
                exc.path = path + (key_node.value,)
                raise
            key = key_node.value
            if key in out:
                raise _Refused(
                    f"the key {key!r} appears twice",
                    key_node.start_mark,
                    "keep one of them; YAML would silently use the last",
                    path + (key,),
                )
            child = path + (key,)
            self.doc.key_pos[child] = _pos(key_node.start_mark)
            out[key] = self.build(value_node, child)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if node.tag in _SCALAR_TAGS and node.tag != STR:
            self.doc.scalars[path] = Scalar(node.tag, node.value, node.style in ("'", '"'))
        try:
            value = _scalar_value(node)  # refused when composed already, if at all: a last resort
        except _Refused as exc:
            exc.path = path
            raise
        assert node.tag != TIMESTAMP or isinstance(value, (_dt.date, _dt.datetime))
        return value


def _kind(tag: str) -> str:
    return {
        BOOL: "boolean",
        INT: "number",
        FLOAT: "number",
        NULL: "null (empty)",
        TIMESTAMP: "date",
    }.get(tag, tag.replace("tag:yaml.org,2002:", ""))


def describe_scalar(scalar: Scalar) -> str:
    """'no' -> "`no` is read by YAML as a boolean"; used in type-error hints."""
    return f"{scalar.text!r} is read by YAML as a {_kind(scalar.tag)}"


def load(source: str | bytes, file: str, limits: Limits = DEFAULT_LIMITS) -> Document:
    """Parse one YAML document into plain values and positions, or raise :class:`Invalid`."""
    if isinstance(source, str):
        try:
            source = source.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(
                [Problem(file, "the text holds characters that are not valid Unicode", hint="save it as UTF-8")]
            ) from None
    if len(source) > limits.max_bytes:
        raise Invalid(
            [
                Problem(
                    file,
                    f"the file is larger than {limits.max_bytes:,} bytes, the most a lemi file may be",
                    hint="this file should be a few lines; check that the right file is named",
                )
            ]
        )
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = source[: exc.start]
        line = before.count(b"\n") + 1
        prefix = before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
        if line == 1:
            prefix = prefix.removeprefix("\ufeff")
        raise Invalid(
            [Problem(file, "the file is not UTF-8 text", line, len(prefix) + 1, hint="save it as UTF-8")]
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    doc = Document(file, None)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, limits)  # the reader checks characters here already
        node = loader.get_single_node()
        if node is None:
            return doc
        doc.value = _Builder(doc, limits).build(node, ())
        return doc
    except _Refused as exc:
        line, column = _pos(exc.mark)
        raise Invalid([Problem(file, exc.message, line, column, dotted(exc.path), exc.hint)]) from None
    except yaml.reader.ReaderError as exc:
        read = text[: exc.position]
        line = read.count("\n") + 1
        column = exc.position - (read.rfind("\n") + 1) + 1
        raise Invalid(
            [
                Problem(
                    file,
                    f"the file holds a control character ({ord(exc.character) if isinstance(exc.character, str) else exc.character:#04x}) YAML does not allow",
                    line,
                    column,
                    hint="remove it; write special characters as escapes inside double quotes",
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _pos(mark)
        message = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in (exc.problem or "") or "but found another document" in (exc.problem or ""):
            hint = "a lemi file holds one YAML document; remove the '---' separator and what follows"
        elif "mapping values are not allowed" in (exc.problem or ""):
            hint = 'a value that contains ": " or ends with ":" must be quoted, e.g. "db-creds:password::"'
        else:
            hint = "check the indentation and quoting around this spot"
        raise Invalid([Problem(file, f"invalid YAML: {message}", line, column, "", hint)]) from None
    except yaml.YAMLError as exc:
        raise Invalid([Problem(file, f"invalid YAML: {exc}", hint="check the file's syntax")]) from None
    except RecursionError:  # pragma: no cover - depth is capped before this
        raise Invalid([Problem(file, "the YAML is nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()
