"""The bounded YAML loader: hostile documents are refused with a clear, positioned problem,
without blowing up in time or memory; ordinary documents keep their positions and how
each scalar was written.
"""

from __future__ import annotations

import datetime
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.problems import Invalid, Problem
from bot.yamlsafe import BOOL, DEFAULT_LIMITS, FLOAT, INT, NULL, TIMESTAMP, Document, Limits, load

FILE = "deploy/demo-service/environment/staging.yaml"
MAX_PEAK = 50 * 1024 * 1024  # loose safety bounds, not performance assertions
MAX_SECONDS = 2.0


class Measured:
    peak = 0
    seconds = 0.0


def measured_refusal(source: str | bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Problem, Measured]:
    """Load ``source``, expect Invalid with exactly one problem, and measure peak memory and time."""
    m = Measured()
    already = tracemalloc.is_tracing()
    if already:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(Invalid) as info:
            load(source, FILE, limits)
    finally:
        m.seconds = time.perf_counter() - started
        m.peak = tracemalloc.get_traced_memory()[1]
        if not already:
            tracemalloc.stop()
    assert m.peak < MAX_PEAK, f"peak memory {m.peak / 2**20:.1f} MiB"
    assert m.seconds < MAX_SECONDS, f"took {m.seconds:.2f} s"
    problems = info.value.problems
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.file == FILE
    assert problem.message
    assert problem.hint, "every refusal says how to fix it"
    return problem, m


def refused(source: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Problem:
    return measured_refusal(source, limits)[0]


# --- resource exhaustion ----------------------------------------------------------------

BILLION_LAUGHS = """\
lol1: &lol1 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
lol2: &lol2 [*lol1, *lol1, *lol1, *lol1, *lol1, *lol1, *lol1, *lol1, *lol1]
lol3: &lol3 [*lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2]
lol4: &lol4 [*lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3]
lol5: &lol5 [*lol4, *lol4, *lol4, *lol4, *lol4, *lol4, *lol4, *lol4, *lol4]
lol6: &lol6 [*lol5, *lol5, *lol5, *lol5, *lol5, *lol5, *lol5, *lol5, *lol5]
lol7: &lol7 [*lol6, *lol6, *lol6, *lol6, *lol6, *lol6, *lol6, *lol6, *lol6]
lol8: &lol8 [*lol7, *lol7, *lol7, *lol7, *lol7, *lol7, *lol7, *lol7, *lol7]
lol9: &lol9 [*lol8, *lol8, *lol8, *lol8, *lol8, *lol8, *lol8, *lol8, *lol8]
"""


def test_billion_laughs_is_refused_at_the_alias_cap() -> None:
    problem = refused(BILLION_LAUGHS)
    assert "aliases" in problem.message
    assert str(DEFAULT_LIMITS.max_aliases) in problem.message
    assert "anchors and aliases" in problem.hint
    # refused while reading the first lines, long before 9**9 values would exist
    assert 2 <= problem.line <= 3


def test_aliases_within_the_cap_that_expand_too_far_are_refused() -> None:
    items = ", ".join(["x"] * 1_500)
    aliases = ", ".join(["*a"] * DEFAULT_LIMITS.max_aliases)
    problem = refused(f"a: &a [{items}]\nb: [{aliases}]\n")
    assert f"more than {DEFAULT_LIMITS.max_nodes} values" in problem.message
    assert "anchors and aliases" in problem.hint


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("a: " + "x" * (10 * 1024 * 1024), id="10MB-str"),
        pytest.param(b"a: " + b"x" * (10 * 1024 * 1024), id="10MB-bytes"),
        # would be a syntax error and a billion laughs if it were parsed at all
        pytest.param("\t[" + BILLION_LAUGHS * 40_000, id="10MB-hostile"),
    ],
)
def test_a_10mb_file_is_refused_by_size_before_parsing(source: str | bytes) -> None:
    problem, m = measured_refusal(source)
    assert f"{DEFAULT_LIMITS.max_bytes:,} bytes" in problem.message
    assert "larger than" in problem.message or "at most" in problem.message
    assert "right file" in problem.hint
    assert (problem.line, problem.column, problem.path) == (1, 1, "")
    assert m.seconds < 0.5  # never handed to the parser


def test_size_is_counted_in_bytes_at_the_exact_limit() -> None:
    limits = Limits(max_bytes=10)
    assert load("a: 1234567", FILE, limits).value == {"a": 1234567}  # 10 bytes: accepted
    assert "10 bytes" in refused("a: 12345678", limits).message  # 11 bytes
    # 9 characters but 12 bytes of UTF-8
    assert "10 bytes" in refused("a: ééééé", limits).message


def test_ten_thousand_nested_flow_sequences_are_refused() -> None:
    problem = refused("[" * 10_000 + "]" * 10_000)
    assert f"nested deeper than {DEFAULT_LIMITS.max_depth} levels" in problem.message
    assert "indentation" in problem.hint
    assert problem.line == 1
    assert problem.column <= DEFAULT_LIMITS.max_depth + 1


def test_unclosed_nested_flow_maps_are_refused() -> None:
    problem = refused("{a: " * 10_000)
    assert "nested deeper than" in problem.message


def test_fifty_levels_of_block_maps_are_refused() -> None:
    text = "".join("  " * i + f"level{i}:\n" for i in range(50)) + "  " * 50 + "bottom\n"
    problem = refused(text)
    assert f"nested deeper than {DEFAULT_LIMITS.max_depth} levels" in problem.message
    # refused where the nesting crosses the cap, not at the bottom of the file
    assert problem.line <= DEFAULT_LIMITS.max_depth + 1


def test_a_realistic_depth_is_fine() -> None:
    doc = load("a:\n  b:\n    c:\n      d:\n        - e\n", FILE)
    assert doc.value == {"a": {"b": {"c": {"d": ["e"]}}}}


# --- tags and YAML features lemi does not use ---------------------------------------------


@pytest.mark.parametrize(
    ("source", "tag"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", "!!python/object/apply:os.system"),
        ("!!python/object/apply:os.system ['true']\n", "!!python/object/apply:os.system"),
        ("a: !!python/name:os.system\n", "!!python/name:os.system"),
        ("a: !!python/object:builtins.dict {b: 1}\n", "!!python/object:builtins.dict"),
        ("a: !!python/tuple [1, 2]\n", "!!python/tuple"),
        ("a: !!python/module:os\n", "!!python/module:os"),
        ("a: !Ref MyBucket\n", "!Ref"),
        ("a: !GetAtt Bucket.Arn\n", "!GetAtt"),
        ("a: !Sub '${AWS::Region}'\n", "!Sub"),
        ("a: !include other.yaml\n", "!include"),
        ("a: !!binary aGVsbG8=\n", "!!binary"),
        ("a: !!set {x, y}\n", "!!set"),
        ("a: !!omap [b: 1]\n", "!!omap"),
        ("a: !!pairs [b: 1]\n", "!!pairs"),
    ],
)
def test_tags_are_refused(source: str, tag: str) -> None:
    problem = refused(source)
    assert problem.message == f"the YAML tag {tag} is not allowed in lemi files"
    assert "remove the tag" in problem.hint
    assert problem.line == 1
    assert problem.column == (4 if source.startswith("a: ") else 1)


def test_python_tags_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for source in (
        f"a: !!python/object/apply:os.system ['touch {marker}']\n",
        f"a: !!python/object/apply:subprocess.call [['touch', '{marker}']]\n",
    ):
        refused(source)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        ("base: &base {cpu: 256}\nresource:\n  <<: *base\n  memory: 512\n", 3, 3),
        ("<<: {a: 1}\nb: 2\n", 1, 1),
    ],
)
def test_merge_keys_are_refused(source: str, line: int, column: int) -> None:
    problem = refused(source)
    assert problem.message == "YAML merge keys (<<) are not supported in lemi files"
    assert problem.hint == "write the keys out in full"
    assert (problem.line, problem.column) == (line, column)


@pytest.mark.parametrize(
    ("source", "key", "path", "line", "column"),
    [
        ("a: 1\nb: 2\na: 3\n", "a", "a", 3, 1),
        ("a: 1\n'a': 2\n", "a", "a", 2, 1),  # quoting does not make it another key
        ("variables:\n  LOG_LEVEL: info\n  LOG_LEVEL: debug\n", "LOG_LEVEL", "variables.LOG_LEVEL", 3, 3),
    ],
)
def test_duplicate_keys_are_refused(source: str, key: str, path: str, line: int, column: int) -> None:
    problem = refused(source)
    assert problem.message == f"the key {key!r} appears twice"
    assert "silently use the last" in problem.hint
    assert (problem.path, problem.line, problem.column) == (path, line, column)


@pytest.mark.parametrize(
    ("source", "key", "kind", "path", "line", "column"),
    [
        ("on: push\n", "on", "boolean", "on", 1, 1),
        ("yes: 1\n", "yes", "boolean", "yes", 1, 1),
        ("true: x\n", "true", "boolean", "true", 1, 1),
        ("1: x\n", "1", "number", "1", 1, 1),
        ("1.5: x\n", "1.5", "number", "1.5", 1, 1),
        ("null: x\n", "null", "null (empty)", "null", 1, 1),
        ("~: x\n", "~", "null (empty)", "~", 1, 1),
        ("2022-01-01: x\n", "2022-01-01", "date", "2022-01-01", 1, 1),
        ("variables:\n  LOG: x\n  on: y\n", "on", "boolean", "variables.on", 3, 3),
    ],
)
def test_non_string_keys_are_refused_with_a_quote_hint(
    source: str, key: str, kind: str, path: str, line: int, column: int
) -> None:
    problem = refused(source)
    assert problem.message == f"the key {key!r} is read by YAML as a {kind}, not as a name"
    assert problem.hint == f'quote it: "{key}"'
    assert (problem.path, problem.line, problem.column) == (path, line, column)


@pytest.mark.parametrize("source", ["[a, b]: x\n", "? {a: 1}\n: x\n", "? - a\n: x\n"])
def test_collection_keys_are_refused(source: str) -> None:
    problem = refused(source)
    assert problem.message == "a key must be a plain name, not a list or a map"
    assert "simple name" in problem.hint
    assert problem.line == 1


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("a: 1\n---\nb: 2\n", 2),
        ("---\na: 1\n---\na: 2\n", 3),
        ("a: 1\n...\n---\nb: 2\n", 3),
    ],
)
def test_multi_document_streams_are_refused(source: str, line: int) -> None:
    problem = refused(source)
    assert "document" in problem.message
    assert "one YAML document" in problem.hint and "'---'" in problem.hint
    assert (problem.line, problem.column) == (line, 1)


def test_a_single_document_may_start_with_a_separator() -> None:
    assert load("---\na: 1\n", FILE).value == {"a": 1}
    assert load("%YAML 1.1\n---\na: 1\n...\n", FILE).value == {"a": 1}


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        pytest.param(b"a: \xff\xfe\n", 1, 4, id="invalid-start-byte"),
        pytest.param(b"a: caf\xe9\n", 1, 7, id="latin-1"),
        pytest.param("a: 1\n".encode("utf-16"), 1, 1, id="utf-16"),
        pytest.param(b"a: 1\nb: caf\xe9\n", 2, 7, id="second-line"),
        pytest.param(b"a: 1\r\nb: \xff\n", 2, 4, id="crlf"),
        pytest.param(b"a: 1\nb: x\xc3", 2, 5, id="truncated-at-end"),
        pytest.param(b"a: \xed\xa0\x80\n", 1, 4, id="encoded-surrogate"),
    ],
)
def test_invalid_utf8_is_refused_at_the_bad_byte(source: bytes, line: int, column: int) -> None:
    problem = refused(source)
    assert problem.message == "the file is not UTF-8 text"
    assert problem.hint == "save it as UTF-8"
    assert (problem.line, problem.column, problem.path) == (line, column, "")


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        pytest.param(b"a: 1\nb: \xc3\xa9\xff\n", 2, 5, id="after-non-ascii"),
        pytest.param(b"\xef\xbb\xbfa: \xff\n", 1, 4, id="after-bom"),
    ],
)
def test_the_column_of_a_bad_byte_counts_characters(source: bytes, line: int, column: int) -> None:
    problem = refused(source)
    assert problem.message == "the file is not UTF-8 text"
    assert (problem.line, problem.column) == (line, column)


def test_a_utf8_byte_order_mark_is_fine() -> None:
    assert load(b"\xef\xbb\xbfa: 1\n", FILE).value == {"a": 1}


@pytest.mark.parametrize(
    ("source", "needle", "line", "column"),
    [
        pytest.param("a:\n\tb: 1\n", "'\\t'", 2, 1, id="tab-indent"),
        pytest.param("name: x\nspec:\n\tresource: 1\n", "'\\t'", 3, 1, id="tab-indent-deeper"),
        pytest.param("a: [1, 2\nb: 3\n", "expected ',' or ']'", 2, 2, id="unclosed-flow"),
        pytest.param("a: 1\n b: 2\n", "mapping values are not allowed here", 2, 3, id="bad-indent"),
        pytest.param("key: value: other\n", "mapping values are not allowed here", 1, 11, id="colon-in-value"),
        pytest.param("DB: db:password::\n", "mapping values are not allowed here", 1, 17, id="unquoted-json-key"),
        pytest.param("a: @x\n", "'@'", 1, 4, id="reserved-indicator"),
        pytest.param("a: `x\n", "'`'", 1, 4, id="backtick"),
        pytest.param("a:\n  - b\n  c: d\n", "expected <block end>", 3, 3, id="list-then-map"),
    ],
)
def test_syntax_errors_are_positioned(source: str, needle: str, line: int, column: int) -> None:
    problem = refused(source)
    assert problem.message.startswith("invalid YAML: ")
    assert needle in problem.message
    if "mapping values" in needle:  # a colon where YAML does not expect one
        assert "quot" in problem.hint
    else:
        assert "indentation and quoting" in problem.hint
    assert (problem.line, problem.column) == (line, column)
    assert problem.render().startswith(f"{FILE}:{line}:{column}: invalid YAML: ")


def test_an_unterminated_quote_is_refused() -> None:
    problem = refused('a: "unterminated\nb: 2\n')
    assert problem.message == "invalid YAML: found unexpected end of stream"
    assert problem.line == 3  # where the stream ended, inside the open quote


# --- characters YAML does not allow ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "code", "line", "column"),
    [
        pytest.param("a: 1\nb: x\x00y\n", "0x00", 2, 5, id="NUL"),
        pytest.param("a: 1\nb: x\x1by\n", "0x1b", 2, 5, id="ESC"),
        pytest.param("a: 1\nb: x\x7fy\n", "0x7f", 2, 5, id="DEL"),
        pytest.param(b"a: 1\nb: x\x00y\n", "0x00", 2, 5, id="NUL-bytes"),
        pytest.param("a: 1\r\nb: \x01\n", "0x01", 2, 4, id="crlf"),
        pytest.param("a: \u00e9\x01\n", "0x01", 1, 5, id="after-non-ascii"),
        pytest.param("\ufeffa: \x01\n", "0x01", 1, 4, id="after-bom"),
    ],
)
def test_control_characters_are_refused_with_their_line(
    source: str | bytes, code: str, line: int, column: int
) -> None:
    problem = refused(source)
    assert problem.message == f"the file holds a control character ({code}) YAML does not allow"
    assert "remove it" in problem.hint
    assert (problem.line, problem.column, problem.path) == (line, column, "")


@pytest.mark.parametrize("source", ["a: \ud800\n", "a: 1\nb: \udcff\n"])
def test_a_lone_surrogate_in_text_is_refused(source: str) -> None:
    problem = refused(source)
    assert problem.message == "the text holds characters that are not valid Unicode"
    assert problem.hint == "save it as UTF-8"


@pytest.fixture
def composed_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the nodes PyYAML composes (the work done before lemi's own caps apply)."""
    count = [0]
    original = yaml.composer.Composer.compose_node

    def counting(self, parent, index):  # type: ignore[no-untyped-def]
        count[0] += 1
        return original(self, parent, index)

    monkeypatch.setattr(yaml.composer.Composer, "compose_node", counting)
    yield count


def test_the_node_cap_stops_composition_of_a_wide_document(composed_nodes: list[int]) -> None:
    limits = Limits(max_nodes=100)
    problem = refused("a: [" + ", ".join(["x"] * 5_000) + "]\n", limits)
    assert problem.message == "the document has more than 100 values"
    assert "right file" in problem.hint
    assert composed_nodes[0] <= 2 * limits.max_nodes
    # refused at the 101st value (the map, its key, the list, then item 98), not at the end
    assert (problem.line, problem.column) == (1, 4 + 97 * 3 + 1)


# --- what a good document keeps -----------------------------------------------------------

GOOD = """\
variables:
  LOG_LEVEL: info
  FEATURE: no
  QUOTED: 'no'
  MODE: on
  VERBOSE: yes
  RATIO: 1.10
  COUNT: 3
  SINCE: 2022-01-01
  EMPTY:
  NAME: "on"
  SHOUT: Off
list:
  - first
  - 2
"""


@pytest.fixture
def good() -> Document:
    return load(GOOD, FILE)


def test_values_are_plain_python(good: Document) -> None:
    assert good.value == {
        "variables": {
            "LOG_LEVEL": "info",
            "FEATURE": False,
            "QUOTED": "no",
            "MODE": True,
            "VERBOSE": True,
            "RATIO": 1.1,
            "COUNT": 3,
            "SINCE": datetime.date(2022, 1, 1),
            "EMPTY": None,
            "NAME": "on",
            "SHOUT": False,
        },
        "list": ["first", 2],
    }


@pytest.mark.parametrize(
    ("path", "key_pos", "value_pos"),
    [
        (("variables",), (1, 1), (2, 3)),
        (("variables", "LOG_LEVEL"), (2, 3), (2, 14)),
        (("variables", "FEATURE"), (3, 3), (3, 12)),
        (("variables", "NAME"), (11, 3), (11, 9)),
        (("list",), (13, 1), (14, 3)),
    ],
)
def test_positions_of_keys_and_values(
    good: Document, path: tuple[str, ...], key_pos: tuple[int, int], value_pos: tuple[int, int]
) -> None:
    assert good.position(path, key=True) == key_pos
    assert good.position(path) == value_pos


def test_positions_of_list_items_and_fallbacks(good: Document) -> None:
    assert good.position(("list", 0)) == (14, 5)
    assert good.position(("list", 1)) == (15, 5)
    # a path that is not in the file falls back to the nearest enclosing node
    assert good.position(("variables", "MISSING")) == (2, 3)
    assert good.position(("nothing", "here")) == (1, 1)
    assert good.position(()) == (1, 1)


def test_a_problem_is_rendered_at_the_position(good: Document) -> None:
    problem = good.problem(("variables", "FEATURE"), "expected a string", 'quote it: "no"')
    assert problem.render() == f'{FILE}:3:12: variables.FEATURE: expected a string\n    hint: quote it: "no"'
    assert good.problem(("variables", "FEATURE"), "x", key=True).column == 3


@pytest.mark.parametrize(
    ("key", "tag", "text"),
    [
        ("FEATURE", BOOL, "no"),
        ("MODE", BOOL, "on"),
        ("VERBOSE", BOOL, "yes"),
        ("RATIO", FLOAT, "1.10"),
        ("COUNT", INT, "3"),
        ("SINCE", TIMESTAMP, "2022-01-01"),
        ("EMPTY", NULL, ""),
        ("SHOUT", BOOL, "Off"),  # as written, not normalised
    ],
)
def test_non_string_scalars_keep_their_original_text(good: Document, key: str, tag: str, text: str) -> None:
    scalar = good.scalars[("variables", key)]
    assert (scalar.tag, scalar.text, scalar.quoted) == (tag, text, False)


def test_strings_are_not_recorded_as_scalars(good: Document) -> None:
    for key in ("LOG_LEVEL", "QUOTED", "NAME"):
        assert ("variables", key) not in good.scalars
        assert isinstance(good.value["variables"][key], str)
    assert ("list", 1) in good.scalars and ("list", 0) not in good.scalars


@pytest.mark.parametrize("source", ["y: y\nn: n\n", "a: 'yes'\nb: \"1.10\"\n", "a: !!str 5\n"])
def test_quoted_and_plain_words_are_strings(source: str) -> None:
    doc = load(source, FILE)
    assert all(isinstance(v, str) for v in doc.value.values())
    assert doc.scalars == {}


@pytest.mark.parametrize("source", ["", b"", "# just a comment\n", "\n\n", "---\n"])
def test_an_empty_document_gives_none(source: str | bytes) -> None:
    doc = load(source, FILE)
    assert doc.value is None
    assert doc.file == FILE
