"""The pure part of GitHub writes (bot/github/schedule.py, classify in bot/github/writer.py):
which write goes next, the budget arithmetic, coalescing and pauses; no I/O, a clock we move."""

from __future__ import annotations

import pytest

from bot.flows.deploy import check_name
from bot.github import writer
from bot.github.schedule import Limits, Priority, Refusal, Schedule, secondary_limit
from bot.github.writer import classify

INTERACTIVE, RESULT, PROGRESS = Priority.INTERACTIVE, Priority.RESULT, Priority.PROGRESS


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def schedule(per_minute: int = 80, per_hour: int = 500) -> tuple[Schedule[str], Clock]:
    clock = Clock()
    return Schedule(Limits(per_minute, per_hour), clock), clock


def send_all(s: Schedule[str]) -> list[str]:
    """Pop and 'send' every write that may go now, in order; the item each one sends."""
    out = []
    while (pending := s.pop()) is not None:
        s.sent()
        out.append(pending.item)
    return out


# ---- which write goes next ---------------------------------------------------------------------


def test_interactive_before_results_before_progress_first_come_first_sent_within_each() -> None:
    s, _ = schedule()
    s.add("progress-1", PROGRESS, "a")
    s.add("result-1", RESULT, "b")
    s.add("reply-1", INTERACTIVE, "c")
    s.add("progress-2", PROGRESS, "d")
    s.add("result-2", RESULT, "e")
    s.add("reply-2", INTERACTIVE, "f")
    assert send_all(s) == ["reply-1", "reply-2", "result-1", "result-2", "progress-1", "progress-2"]
    assert s.wait() is None and len(s) == 0


def test_a_newer_progress_write_replaces_the_waiting_one_in_its_place() -> None:
    s, _ = schedule()
    first = s.add("run-1: 10%", PROGRESS, "check-run:1")
    s.add("run-2: 10%", PROGRESS, "check-run:2")
    again = s.add("run-1: 50%", PROGRESS, "check-run:1")
    s.add("run-1: 90%", PROGRESS, "check-run:1")
    assert again is first and first.items == ["run-1: 10%", "run-1: 50%", "run-1: 90%"]
    assert s.waiting(PROGRESS) == 2
    # run 1 keeps its place in line; only its newest update is sent
    assert send_all(s) == ["run-1: 90%", "run-2: 10%"]


def test_progress_without_a_key_or_of_other_priorities_is_never_coalesced() -> None:
    s, _ = schedule()
    s.add("a", PROGRESS)
    s.add("b", PROGRESS)
    s.add("annotations 1", INTERACTIVE, "check-run:1")
    s.add("annotations 2", INTERACTIVE, "check-run:1")
    assert send_all(s) == ["annotations 1", "annotations 2", "a", "b"]


def test_a_final_write_supersedes_the_progress_waiting_for_the_same_resource() -> None:
    s, _ = schedule()
    s.add("in_progress", PROGRESS, "/deployments/7/statuses")
    s.add("other deploy", PROGRESS, "/deployments/8/statuses")
    final = s.add("success", RESULT, "/deployments/7/statuses")
    assert final.items == ["in_progress", "success"]  # answered together
    assert s.waiting(PROGRESS) == 1
    assert send_all(s) == ["success", "other deploy"]
    # a progress write after the final one is its own write again
    s.add("late", PROGRESS, "/deployments/7/statuses")
    assert send_all(s) == ["late"]


def test_a_withdrawn_write_is_not_sent_and_a_coalesced_one_falls_back_to_the_newest_still_wanted() -> None:
    s, _ = schedule()
    s.add("old", PROGRESS, "k")
    s.add("new", PROGRESS, "k")
    s.add("alone", RESULT)
    assert s.withdraw("new") and s.withdraw("alone")
    assert not s.withdraw("never queued")
    assert send_all(s) == ["old"]
    s.add("only", PROGRESS, "k")
    assert s.withdraw("only") and len(s) == 0
    s.add("fresh", PROGRESS, "k")  # the key is free again
    assert send_all(s) == ["fresh"]


def test_drain_takes_every_waiting_write_out() -> None:
    s, _ = schedule()
    s.add("a", PROGRESS, "k")
    s.add("b", INTERACTIVE)
    assert [p.item for p in s.drain()] == ["b", "a"]
    assert len(s) == 0 and s.wait() is None
    s.add("c", PROGRESS, "k")
    assert send_all(s) == ["c"]


# ---- the budget --------------------------------------------------------------------------------


def test_no_more_than_the_minute_budget_in_any_sixty_seconds() -> None:
    s, clock = schedule(per_minute=5, per_hour=500)
    for i in range(8):
        s.add(f"reply-{i}", INTERACTIVE)
    sent = []
    for _ in range(5):  # one a second
        pending = s.pop()
        assert pending is not None
        s.sent()
        sent.append(pending.item)
        clock.t += 1
    assert sent == [f"reply-{i}" for i in range(5)]
    # the five answers came at 1000..1004: the sixth may go when the first leaves the window
    assert s.wait() == pytest.approx(1060 - clock.t)
    clock.t = 1059.9
    assert s.pop() is None
    clock.t = 1060.0
    assert send_all(s) == ["reply-5"]  # the answers of 1001..1004 and 1060 fill the window again
    assert s.wait() == pytest.approx(1.0)  # the second answer (1001) leaves next


def test_no_more_than_the_hour_budget_in_any_hour() -> None:
    s, clock = schedule(per_minute=80, per_hour=10)
    sent_at = []
    for i in range(12):
        s.add(f"w{i}", INTERACTIVE)
    while len(sent_at) < 10:
        assert s.wait() == 0.0
        pending = s.pop()
        assert pending is not None
        s.sent()
        sent_at.append(clock.t)
        clock.t += 120  # two minutes apart: the minute window is never the limit
    # ten in the hour since 1000: the next may go when the first is an hour old
    assert s.wait() == pytest.approx(1000 + 3600 - clock.t)
    clock.t = 1000 + 3600
    assert s.pop() is not None


def test_each_priority_leaves_part_of_the_budget_to_the_ones_above_it() -> None:
    limits = Limits(per_minute=80, per_hour=500)
    assert limits.allowed(INTERACTIVE) == (80, 500)
    assert limits.allowed(RESULT) == (48, 300)
    assert limits.allowed(PROGRESS) == (28, 175)
    s, clock = schedule(per_minute=20, per_hour=500)  # progress 7, results 12, interactive 20; 3 and 4 paced in 20 s
    for i in range(10):
        s.add(f"p{i}", PROGRESS, f"k{i}")
    sent = []
    for _ in range(3):  # 1000, 1020, 1040
        sent += send_all(s)
        clock.t += 20
    clock.t = 1050
    assert len(sent) == 7  # progress's share of the minute (3, 3, 1), though the pace would let 2 more go ...
    assert s.wait() == pytest.approx(1060 - clock.t)  # ... so it waits for the window
    for i in range(6):
        s.add(f"result-{i}", RESULT)
    assert send_all(s) == ["result-0", "result-1", "result-2"]  # results: the pace (4 less 1), below their share (12)
    replies = [f"reply-{n}" for n in range(10)]
    for name in replies:
        s.add(name, INTERACTIVE)
    assert send_all(s) == replies  # replies use the rest of the minute: 7 + 3 + 10 = 20
    assert s.wait_for(INTERACTIVE) == pytest.approx(1060 - clock.t)
    clock.t = 1060
    assert send_all(s) == []  # the windows count replies too: 17 in the minute, above the results' 12
    clock.t = 1111
    assert send_all(s) == ["result-3", "result-4", "result-5"]  # the replies left the window: the results go


def test_results_and_progress_are_spread_over_the_minute_replies_are_not() -> None:
    limits = Limits(per_minute=80, per_hour=500)
    assert (limits.paced(INTERACTIVE), limits.paced(RESULT), limits.paced(PROGRESS)) == (None, 16, 10)
    s, clock = schedule()
    for i in range(60):
        s.add(f"result-{i}", RESULT)
    assert len(send_all(s)) == 16  # a push's results: 16 in any 20 s, not 48 at once
    assert s.wait() == pytest.approx(20.0)
    replies = [f"reply-{n}" for n in range(40)]
    for name in replies:
        s.add(name, INTERACTIVE)
    assert send_all(s) == replies  # replies are not paced, nor do they count in the pace
    clock.t += 20
    assert len(send_all(s)) == 0  # but the minute holds 56 writes: the results' share (48) is used
    clock.t += 40
    assert len(send_all(s)) == 16  # the first 16 left the window: 16 more, paced again


def test_a_write_counts_from_its_answer() -> None:
    s, clock = schedule(per_minute=1)
    s.add("a", INTERACTIVE)
    s.add("b", INTERACTIVE)
    pending = s.pop()
    assert pending is not None and pending.item == "a"
    clock.t += 5  # the answer came 5 s later
    s.sent()
    assert s.wait() == pytest.approx(60.0)


# ---- pauses GitHub asks for -------------------------------------------------------------------


def test_a_refusal_pauses_for_the_time_github_asks_longer_for_each_refusal_in_a_row() -> None:
    s, clock = schedule()
    s.add("reply", INTERACTIVE)
    pending = s.pop()
    assert pending is not None
    s.sent()
    assert s.refused(pending, 30.0) == 30.0 and pending.refusals == 1
    s.requeue(pending)
    assert s.wait() == pytest.approx(30.0) and s.paused_for() == pytest.approx(30.0)
    assert s.pop() is None
    clock.t += 30
    again = s.pop()
    assert again is pending
    s.sent()
    assert s.refused(again, 30.0) == 60.0  # twice in a row
    s.requeue(again)
    clock.t += 60
    again = s.pop()
    assert again is not None
    s.sent()
    s.accepted()
    s.add("next", INTERACTIVE)
    nxt = s.pop()
    assert nxt is not None
    s.sent()
    assert s.refused(nxt, None) == 60.0  # no retry-after: a minute, and the streak started over


def test_a_refused_progress_write_is_merged_with_a_newer_one_queued_meanwhile() -> None:
    s, _ = schedule()
    s.add("10%", PROGRESS, "k")
    pending = s.pop()
    assert pending is not None
    s.add("50%", PROGRESS, "k")  # queued while the first was being sent
    s.sent()
    s.refused(pending, 0.0)
    s.requeue(pending)
    (merged,) = s.drain()
    assert merged.items == ["10%", "50%"]


def test_githubs_secondary_limit_answers_are_recognised() -> None:
    message = b'{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'
    assert secondary_limit(403, {"Retry-After": "30"}, message) == Refusal(30.0)
    assert secondary_limit(429, {"retry-after": "7"}, b"") == Refusal(7.0)
    assert secondary_limit(403, {}, message) == Refusal(None)
    assert secondary_limit(429, {}, b"{}") == Refusal(None)
    assert secondary_limit(403, {"retry-after": "soon"}, message) == Refusal(None)
    # not the secondary limit: the primary one, permissions, success
    assert secondary_limit(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}, b"{}") is None
    assert secondary_limit(403, {}, b'{"message": "Resource not accessible by integration"}') is None
    assert secondary_limit(403, {}, b"not json") is None
    assert secondary_limit(201, {"retry-after": "30"}, b"{}") is None


# ---- what a write is ---------------------------------------------------------------------------

API = "https://api.github.com"
REPO = "/repos/acme/demo"


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", f"{REPO}/issues/12/comments", b'{"body": "done"}', INTERACTIVE),
        ("PATCH", f"{REPO}/issues/comments/99", b'{"body": "done"}', INTERACTIVE),
        ("POST", f"{REPO}/issues/comments/99/reactions", b'{"content": "eyes"}', INTERACTIVE),
        ("POST", f"{REPO}/check-runs", b'{"name": "lemi / spec", "status": "completed"}', INTERACTIVE),
        ("PATCH", f"{REPO}/check-runs/5", b'{"name": "lemi / provision", "status": "in_progress"}', INTERACTIVE),
        ("PATCH", f"{REPO}/check-runs/5", b'{"output": {"annotations": []}}', INTERACTIVE),
        ("POST", f"{REPO}/check-runs", b'{"name": "lemi / deploy (staging)", "status": "in_progress"}', RESULT),
        ("PATCH", f"{REPO}/check-runs/5", b'{"name": "lemi / deploy (staging)", "status": "in_progress"}', PROGRESS),
        ("PATCH", f"{REPO}/check-runs/5", b'{"name": "lemi / deploy (prod) api", "status": "queued"}', PROGRESS),
        (
            "PATCH",
            f"{REPO}/check-runs/5",
            b'{"name": "lemi / deploy (staging)", "status": "completed", "conclusion": "success"}',
            RESULT,
        ),
        ("POST", f"{REPO}/deployments", b'{"ref": "abc", "environment": "staging"}', RESULT),
        ("POST", f"{REPO}/deployments/7/statuses", b'{"state": "in_progress"}', PROGRESS),
        ("POST", f"{REPO}/deployments/7/statuses", b'{"state": "queued"}', PROGRESS),
        ("POST", f"{REPO}/deployments/7/statuses", b'{"state": "success"}', RESULT),
        ("POST", f"{REPO}/deployments/7/statuses", b'{"state": "inactive"}', RESULT),
        ("POST", f"{REPO}/pulls", b'{"title": "x"}', RESULT),
        ("PUT", f"{REPO}/contents/services/a.tf", b'{"content": "eA=="}', RESULT),
    ],
)
def test_the_priority_of_a_write_is_inferred_from_its_method_path_and_body(
    method: str, path: str, body: bytes, expected: Priority
) -> None:
    assert classify(method, API + path, body) == (expected, path)
    # GitHub Enterprise Server's layout is read the same
    assert classify(method, "https://ghe.example.com/api/v3" + path + "?x=1", body)[0] == expected


def test_every_deploy_check_run_name_is_recognised_as_a_deploy_check() -> None:
    for name in (check_name("acme/api", "api", "staging"), check_name("acme/api", "worker", "prod")):
        body = f'{{"name": "{name}", "status": "completed", "conclusion": "success"}}'.encode()
        assert classify("PATCH", f"{API}{REPO}/check-runs/5", body)[0] is RESULT, name


def test_a_callers_mark_wins_and_progress_keys_default_to_the_url() -> None:
    url = f"{API}{REPO}/issues/comments/99"
    with writer.progress():
        assert classify("PATCH", url, b"{}", writer._MARK.get()) == (PROGRESS, f"{REPO}/issues/comments/99")
        with writer.interactive():  # the innermost mark
            assert classify("POST", f"{API}{REPO}/deployments", b"{}", writer._MARK.get())[0] is INTERACTIVE
    with writer.progress(key="rollout:api"):
        assert classify("POST", f"{API}{REPO}/deployments/7/statuses", b"{}", writer._MARK.get()) == (
            PROGRESS,
            "rollout:api",
        )
    with writer.results():
        assert classify("POST", f"{API}{REPO}/issues/1/comments", b"{}", writer._MARK.get())[0] is RESULT
    assert writer._MARK.get() is None
