"""Text from users inside lemi's Markdown, made inert (pure).

lemi's comments, check runs and pull request bodies quote what users wrote: values
of their service files (in problems and findings), names from comments, messages of
parsers. On GitHub, ``@name`` in such text would mention (notify) someone, ``#12``
or ``owner/repo#12`` would link an issue, a URL or ``www.`` would become a link,
and ``[text](url)`` or ``<url>`` a link with any text. :func:`inert` keeps the text
readable but unable to do any of that; :func:`code` puts a value in a code span
and :func:`fence` opens a code block that no backtick inside can close early.
Templates use them as the ``inert``, ``code`` and ``fence`` filters.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"  # zero width: breaks a mention or an autolink, invisible to the reader
# link and HTML syntax (`[text](url)`, `<url>`, `<img>`) and the backslash that could undo an
# escape; code spans and emphasis stay: inside a code span nothing links or mentions
_MARKDOWN = re.compile(r"([\\\[\]<>])")
_MENTION = re.compile(r"@")
_REFERENCE = re.compile(r"#(?=\d)|(?<=GH)-(?=\d)", re.IGNORECASE)
_SCHEME = re.compile(r"(?<=[A-Za-z]):(?=//)|(?<=mailto):|(?<=xmpp):", re.IGNORECASE)
_WWW = re.compile(r"(?<=www)\.", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def inert(text: object) -> str:
    """``text`` for a Markdown paragraph: no mentions, references, links or HTML (code spans
    and emphasis are kept). Line breaks become spaces (a value cannot start a heading, a
    list or a table row)."""
    value = _CONTROL.sub(" ", str(text)).replace("\r", " ").replace("\n", " ")
    value = _MARKDOWN.sub(r"\\\1", value)
    value = _MENTION.sub("@" + ZWSP, value)
    value = _REFERENCE.sub(lambda m: m.group(0) + ZWSP, value)
    value = _SCHEME.sub(":" + ZWSP, value)
    value = _WWW.sub(ZWSP + ".", value)
    return value


def fence(lines: object) -> str:
    """A code fence for ``lines`` (a list of strings) that none of them can close: three
    backticks, or one more than the longest run of backticks inside."""
    texts = [str(line) for line in lines] if isinstance(lines, (list, tuple)) else [str(lines)]
    longest = max((len(run) for text in texts for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def code(text: object) -> str:
    """``text`` as one inline code span (CommonMark: a fence longer than any run of
    backticks inside it, padded when the text starts or ends with one)."""
    value = _CONTROL.sub(" ", str(text)).replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # terminal colours and cursor moves in log lines
TAIL_LINES = 20
TAIL_BYTES = 4096


def tail(lines: list[str], *, max_lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> list[str]:
    """The last lines of a log for a report: at most ``max_lines`` lines and ``max_bytes`` bytes
    of UTF-8 in all (the newest kept; a single line longer than that is cut at its start), each
    on one line without terminal escapes or control characters, for a ``fence`` block."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-max_lines:] if max_lines > 0 else []):
        clean = _CONTROL.sub(" ", _ANSI.sub("", line)).replace("\r", " ").replace("\n", " ").rstrip()
        encoded = clean.encode("utf-8")
        room = max_bytes - size - (1 if kept else 0)  # a newline between lines
        if len(encoded) > room:
            if not kept and room > 3:  # the newest line alone is too long: keep its end
                kept.append("…" + encoded[-(room - 3) :].decode("utf-8", "ignore"))
            break
        kept.append(clean)
        size += len(encoded) + (1 if len(kept) > 1 else 0)
    return kept[::-1]
