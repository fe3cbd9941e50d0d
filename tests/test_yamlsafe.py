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

import bot.core.yamlsafe
from bot.core.problems import Invalid, Problem
from bot.core.yamlsafe import BOOL, DEFAULT_LIMITS, FLOAT, INT, MAX_NUMBER_TEXT, NULL, TIMESTAMP, Document, Limits, load

FILE = "deploy/demo-service/environment/staging.yaml"
MAX_PEAK = 50 * 1024 * 1024  # loose safety bounds, not performance assertions:
# a hostile document expanded would take gigabytes and hours; refused, it takes a fraction of
# these. CPU time of this process, so other work on the machine (the suite's other workers)
# does not count.
MAX_CPU_SECONDS = 10.0


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
    started = time.process_time()
    try:
        with pytest.raises(Invalid) as info:
            load(source, FILE, limits)
    finally:
        m.seconds = time.process_time() - started
        m.peak = tracemalloc.get_traced_memory()[1]
        if not already:
            tracemalloc.stop()
    assert m.peak < MAX_PEAK, f"peak memory {m.peak / 2**20:.1f} MiB"
    assert m.seconds < MAX_CPU_SECONDS, f"took {m.seconds:.2f} s of CPU"
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
def test_a_10mb_file_is_refused_by_size_before_parsing(source: str | bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parser(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file over the size limit was handed to the YAML parser")

    monkeypatch.setattr(bot.core.yamlsafe._BoundedLoader, "__init__", no_parser)
    problem, _ = measured_refusal(source)
    assert f"{DEFAULT_LIMITS.max_bytes:,} bytes" in problem.message
    assert "larger than" in problem.message or "at most" in problem.message
    assert "right file" in problem.hint
    assert (problem.line, problem.column, problem.path) == (1, 1, "")


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


def test_deep_flow_nesting_is_refused_while_scanning(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's scanner reads up to 1,024 characters ahead for a possible key and, per token,
    walks every open flow level: ``[[[[...`` must stop at the cap, not 1,000 tokens later."""
    fetched = [0]
    original = yaml.scanner.Scanner.fetch_more_tokens

    def counting(self):  # type: ignore[no-untyped-def]
        fetched[0] += 1
        return original(self)

    monkeypatch.setattr(yaml.scanner.Scanner, "fetch_more_tokens", counting)
    problem = refused("a: " + "[" * 100_000)
    assert f"nested deeper than {DEFAULT_LIMITS.max_depth} levels" in problem.message
    assert (problem.line, problem.column) == (1, 4 + DEFAULT_LIMITS.max_depth)
    assert fetched[0] <= DEFAULT_LIMITS.max_depth + 5


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
def test_control_characters_are_refused_with_their_line(source: str | bytes, code: str, line: int, column: int) -> None:
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


# --- scalars YAML 1.1 cannot represent, or that cost too much to build ---------------------


def poisoned(source: str | bytes) -> Problem:
    """Load ``source``: it must raise Invalid (nothing else) with one positioned problem that
    says how to fix it. (No time is asserted: see the composed-node tests below.)"""
    with pytest.raises(Invalid) as info:
        load(source, FILE)
    (problem,) = info.value.problems
    assert problem.file == FILE and problem.message and problem.hint
    assert len(problem.message) < 200, "a long value is cut short in the message"
    return problem


LONG_INT = "1" * 5_000  # more digits than Python turns into an int (4,300)

POISON = [
    # (source, in the message, the hint, path, line, column)
    pytest.param("owner: 2024-02-30\n", "'2024-02-30' is read by YAML as a date, but it is not a valid one",
                 'quote it: "2024-02-30"', "owner", 1, 8, id="impossible-date"),
    pytest.param("a:\n  b: 2024-13-01\n", "is not a valid one (month must be in 1..12)",
                 'quote it: "2024-13-01"', "a.b", 2, 6, id="month-13"),
    pytest.param("at: 2001-12-14 25:59:43\n", "'2001-12-14 25:59:43' is read by YAML as a date, but it is not a valid one",
                 'quote it: "2001-12-14 25:59:43"', "at", 1, 5, id="hour-25"),
    pytest.param("at: 2001-12-14t21:59:43+99\n", "is not a valid one",
                 'quote it: "2001-12-14t21:59:43+99"', "at", 1, 5, id="zone-99-hours"),
    pytest.param(f"n: {LONG_INT}\n", f"is read by YAML as a number, longer than the {MAX_NUMBER_TEXT} characters",
                 "quote it if it is text", "n", 1, 4, id="5000-digit-int"),
    pytest.param("n: " + "9" * (MAX_NUMBER_TEXT + 1) + "\n", "longer than the", "quote it if it is text", "n", 1, 4,
                 id="just-too-long-int"),
    pytest.param("n: 0x" + "f" * 100 + "\n", "read by YAML as a number, longer", "quote it if it is text", "n", 1, 4,
                 id="long-hex"),
    pytest.param("n: 0" + "7" * 100 + "\n", "read by YAML as a number, longer", "quote it if it is text", "n", 1, 4,
                 id="long-octal"),
    pytest.param("n: 1." + "5" * 100 + "\n", "read by YAML as a number, longer", "quote it if it is text", "n", 1, 4,
                 id="long-float"),
    pytest.param("at: 2001-12-14t21:59:43." + "1" * 100 + "\n", "read by YAML as a date, longer", "quote it if it is text",
                 "at", 1, 5, id="long-timestamp"),
    pytest.param("time: 1:30\n", "'1:30' is read by YAML as a base-60 (sexagesimal) number",
                 'quote it: "1:30"; YAML 1.1 reads it as a base-60 number', "time", 1, 7, id="base60-int"),
    pytest.param("time: -1:30\n", "base-60", 'quote it: "-1:30"; YAML 1.1 reads it as a base-60 number', "time", 1, 7,
                 id="base60-negative"),
    pytest.param("angle: 190:20:30.15\n", "'190:20:30.15' is read by YAML as a base-60 (sexagesimal) number",
                 'quote it: "190:20:30.15"; YAML 1.1 reads it as a base-60 number', "angle", 1, 8, id="base60-float"),
    pytest.param("list:\n  - ok\n  - 1:2:3\n", "base-60", 'quote it: "1:2:3"; YAML 1.1 reads it as a base-60 number',
                 "list[1]", 3, 5, id="base60-in-a-list"),
    pytest.param("a: !!int foo\n", "'foo' is tagged !!int but is not a number", "remove the tag; lemi files need no tags", "a", 1, 4,
                 id="tagged-int"),
    pytest.param("a: !!bool maybe\n", "'maybe' is tagged !!bool but is not a boolean", "remove the tag; lemi files need no tags", "a", 1, 4,
                 id="tagged-bool"),
    pytest.param("a: !!float x\n", "tagged !!float but is not a number", "remove the tag; lemi files need no tags", "a", 1, 4, id="tagged-float"),
    pytest.param("a: !!timestamp soon\n", "tagged !!timestamp but is not a date", "remove the tag; lemi files need no tags", "a", 1, 4,
                 id="tagged-timestamp"),
    pytest.param("a: !!null x\n", "tagged !!null but is not a null (empty)", "remove the tag; lemi files need no tags", "a", 1, 4, id="tagged-null"),
    # matches YAML's pattern for a hex number, but int("", 16) fails: the constructor's own error
    pytest.param("a: !!int 0x_\n", "'0x_' is read by YAML as a number, but it cannot be built as one",
                 'quote it: "0x_" if it is text', "a", 1, 4, id="constructor-error"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "needle", "hint", "path", "line", "column"), POISON)
def test_values_yaml_cannot_build_are_positioned_problems(
    source: str, needle: str, hint: str, path: str, line: int, column: int
) -> None:
    problem = poisoned(source)
    assert needle in problem.message
    assert problem.hint == hint
    assert (problem.path, problem.line, problem.column) == (path, line, column)


def test_a_long_number_key_is_cut_short_in_its_message() -> None:
    key = LONG_INT[:500]  # a key YAML still reads as one (at most 1,024 characters)
    problem = poisoned(f"{key}: x\n")
    assert (
        problem.message
        == f"the key {key[:MAX_NUMBER_TEXT]!r}... (500 characters) is read by YAML as a number, not as a name"
    )
    assert problem.hint == "quote it" and (problem.line, problem.column) == (1, 1)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("n: " + "9" * MAX_NUMBER_TEXT + "\n", int("9" * MAX_NUMBER_TEXT)),  # at the bound: read
        ("n: 1_000\n", 1000),
        ("n: 0x1F\n", 31),
        ("n: -0b101\n", -5),
        ("n: 1.5e+3\n", 1500.0),
        ("n: .inf\n", float("inf")),
        ("n: 2024-02-29\n", datetime.date(2024, 2, 29)),
        ("n: 2001-12-14t21:59:43.10-05:00\n", datetime.datetime(2001, 12, 14, 21, 59, 43, 100000,
                                                               datetime.timezone(datetime.timedelta(hours=-5)))),
        ("n: '1:30'\n", "1:30"),
        ('n: "2024-02-30"\n', "2024-02-30"),
        ("n: 1:30 pm\n", "1:30 pm"),  # not a number to YAML: a string
        ("n: !!int 12\n", 12),
    ],
)  # fmt: skip
def test_ordinary_numbers_dates_and_quoted_look_alikes_still_load(source: str, value: object) -> None:
    assert load(source, FILE).value == {"n": value}


def test_no_constructor_error_escapes_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a scalar constructor raises becomes a positioned problem (the last resort)."""

    def broken(node: yaml.Node) -> object:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setitem(bot.core.yamlsafe._CONSTRUCT, FLOAT, broken)
    problem = poisoned("a:\n  ratio: 1.5\n")
    assert problem.message == "'1.5' is read by YAML as a number, but it cannot be built as one"
    assert problem.hint == 'quote it: "1.5" if it is text'
    assert (problem.path, problem.line, problem.column) == ("a.ratio", 2, 10)


K256 = 256 * 1024


def filled(line: str) -> str:
    """A file of just under 256 KiB: ``line`` (with {i}) over and over."""
    out, size, i = [], 0, 0
    while size + len(line) + 8 < K256:
        out.append(line.format(i=i))
        size += len(out[-1])
        i += 1
    return "".join(out)


POISON_FILES = {
    "impossible dates": filled("k{i}: 2024-02-30\n"),
    "base-60 ints": filled("k{i}: 1:2:3:4:5:6:7:8:9\n"),
    "base-60 floats": filled("k{i}: 190:20:30.15\n"),
    "long ints": filled("k{i}: " + LONG_INT[:1000] + "\n"),
    "long floats": filled("k{i}: 1." + LONG_INT[:1000] + "\n"),
    "tagged garbage": filled("k{i}: !!int foo\n"),
    "non-string keys": filled("2024-02-30: {i}\n"),
}


@pytest.mark.parametrize("kind", list(POISON_FILES))
def test_a_256_kib_file_of_poison_is_refused_at_its_first_value(kind: str, composed_nodes: list[int]) -> None:
    """Refused where the first poison value is read: the rest of the file is never composed
    (nor built), so the cost does not grow with the file."""
    source = POISON_FILES[kind]
    assert K256 - 1100 < len(source.encode()) <= K256
    problem = poisoned(source)
    assert (problem.line, problem.column) == (1, 1 if kind == "non-string keys" else 5)
    assert composed_nodes[0] <= 3  # the map, the first key, the first value


def test_one_huge_base60_number_is_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """1:2:3:... over 256 KiB is a quadratic big int to PyYAML: refused from its text alone."""

    def never(node: yaml.Node) -> object:
        raise AssertionError(f"built a {len(node.value):,}-character number")

    monkeypatch.setitem(bot.core.yamlsafe._CONSTRUCT, INT, never)
    monkeypatch.setitem(bot.core.yamlsafe._CONSTRUCT, FLOAT, never)
    for source in ("x: " + "1:" * ((K256 - 8) // 2) + "1\n", "x: " + "1:" * ((K256 - 10) // 2) + "1.5\n"):
        assert len(source.encode()) <= K256
        problem = poisoned(source)
        assert "base-60" in problem.message and "262,1" in problem.message  # its length, not its text
        assert problem.hint == "quote it; YAML 1.1 reads it as a base-60 number"


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
