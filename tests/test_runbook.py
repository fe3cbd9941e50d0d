"""docs/operations.md, the runbook, against the code: its backup of the embedded queue restores the
jobs and their documents, and its alerts name series lemi serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from job_harness import document_of, webhook_job

from bot.store.sqlite_queue import INLINE_DOCUMENT, SQLiteQueue
from tools.docs import METRIC_CLASSES, metrics_defined

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = (ROOT / "docs" / "operations.md").read_text()


def backup_lines() -> list[str]:
    block = re.search(r"<!-- tests/test_runbook.py runs this block -->\n```sh\n(.*?)```", RUNBOOK, re.S)
    assert block, "docs/operations.md has no backup block for this test"
    return block.group(1).strip().splitlines()


def big(n: int) -> dict[str, object]:
    """A document over the inline size: it lives in the .bodies/ directory, not in its row."""
    return {"n": n, "body": "x" * (INLINE_DOCUMENT * 2)}


async def test_the_backup_taken_while_lemi_runs_restores_every_job_and_document(tmp_path: Path) -> None:
    live, backup = tmp_path / "var-lib-lemi", tmp_path / "backup-lemi"
    live.mkdir()
    python = tmp_path / "bin"
    python.mkdir()
    (python / "python").symlink_to(sys.executable)  # the image's `python`
    env = {**os.environ, "PATH": f"{python}{os.pathsep}{os.environ['PATH']}"}

    queue = SQLiteQueue(live / "lemi-queue.db")
    assert await queue.put(webhook_job("d-1", "acme/demo#1", big(1)))
    assert await queue.put(webhook_job("d-2", "acme/demo#2", {"n": 2}))
    assert list((live / "lemi-queue.db.bodies").glob("*.seg")), "the first document is in a file beside the db"

    lines = backup_lines()
    assert lines[0] == "cd /var/lib/lemi"
    copies = [i for i, line in enumerate(lines) if line.startswith("cp -a")]
    snapshot = next(i for i, line in enumerate(lines) if "backup(" in line or ".backup" in line)
    assert copies[0] < snapshot < copies[-1], "the documents are copied before and after the snapshot"
    for index, line in enumerate(lines[1:], start=1):
        command = line.replace("/backup/lemi", str(backup)).replace("/var/lib/lemi", str(live))
        subprocess.run(["bash", "-ec", command], cwd=live, env=env, check=True, timeout=60)
        if index == copies[0]:
            # lemi keeps running: a delivery stored between the first copy and the snapshot
            assert await queue.put(webhook_job("d-3", "acme/demo#3", big(3)))
    # and one after the snapshot, which the backup does not have
    assert await queue.put(webhook_job("d-4", "acme/demo#4", big(4)))
    await queue.close()

    restored = SQLiteQueue(backup / "lemi-queue.db")
    try:
        found = {}
        while (job := await restored.lease("restored", 60)) is not None:
            found[job.dedupe_id] = document_of(job)
            assert await restored.complete(job)
        assert found == {"d-1": big(1), "d-2": {"n": 2}, "d-3": big(3)}
    finally:
        await restored.close()


def test_the_alerts_name_series_lemi_serves() -> None:
    series = {m.name + suffix for m in metrics_defined() for suffix in METRIC_CLASSES[m.kind]}
    alerts = RUNBOOK.split("Alerts to set", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\blemi_[a-z_]+\b", alerts))
    assert len(named) >= 6, named
    assert named <= series, f"the alerts name series lemi does not serve: {sorted(named - series)}"
    labels = {m.name: m.labels for m in metrics_defined()}
    selectors = re.findall(r"\b(lemi_[a-z_]+?)(?:_total|_count|_bucket)?\{(\w+)=", alerts)
    assert len(selectors) >= 4, selectors
    for name, label in selectors:
        assert label in labels[name], (name, label)
