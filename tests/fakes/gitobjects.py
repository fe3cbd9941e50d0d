"""Git object ids and tree arithmetic for the GitHub fake (real git hashing).

Blob, tree and commit ids are computed exactly as git computes them, so a
product that compares a ``contents`` sha with a tree entry sha, or passes a
blob sha back to ``PUT /contents``, sees the values GitHub would give.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class TreeEntry:
    name: str
    mode: str  # "100644" (blob) or "040000" (tree, as the REST API spells it)
    type: str  # "blob" | "tree"
    sha: str
    size: int | None = None


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    tree_sha: str
    parents: list[str]
    message: str
    author: str  # login
    date: str  # ISO 8601
    timestamp: int


@dataclass
class ObjectStore:
    """Every blob, tree and commit of every repository (one fork network, like GitHub's)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, list[TreeEntry]] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def write_tree(self, files: dict[str, bytes]) -> str:
        """Store the nested trees of a flat {path: bytes}; return the root tree id."""
        root: dict[str, object] = {}
        for path, data in files.items():
            node = root
            parts = path.split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            node[parts[-1]] = data
        return self._write(root)

    def _write(self, node: dict[str, object]) -> str:
        entries: list[TreeEntry] = []
        for name, value in node.items():
            if isinstance(value, dict):
                entries.append(TreeEntry(name, "040000", "tree", self._write(value)))
            else:
                assert isinstance(value, bytes)
                sha = blob_sha(value)
                self.blobs[sha] = value
                entries.append(TreeEntry(name, "100644", "blob", sha, len(value)))
        # git sorts tree entries by name, a tree's name compared as if it ended with "/"
        entries.sort(key=lambda e: (e.name + "/" if e.type == "tree" else e.name).encode())
        raw = b"".join(
            f"{'40000' if e.type == 'tree' else e.mode} {e.name}".encode() + b"\0" + bytes.fromhex(e.sha)
            for e in entries
        )
        sha = hashlib.sha1(b"tree %d\0" % len(raw) + raw).hexdigest()
        self.trees[sha] = entries
        return sha

    def write_commit(
        self, files: dict[str, bytes], parents: list[str], message: str, author: str, timestamp: int, date: str
    ) -> Commit:
        tree = self.write_tree(files)
        email = f"{author}@users.noreply.github.com"
        text = f"tree {tree}\n"
        text += "".join(f"parent {p}\n" for p in parents)
        text += (
            f"author {author} <{email}> {timestamp} +0000\ncommitter {author} <{email}> {timestamp} +0000\n\n{message}"
        )
        raw = text.encode()
        sha = hashlib.sha1(b"commit %d\0" % len(raw) + raw).hexdigest()
        commit = Commit(sha, dict(files), tree, list(parents), message, author, date, timestamp)
        self.commits[sha] = commit
        return commit

    def walk(self, tree_sha: str, prefix: str = "", recursive: bool = False) -> list[tuple[str, TreeEntry]]:
        out = []
        for entry in self.trees[tree_sha]:
            path = prefix + entry.name
            out.append((path, entry))
            if recursive and entry.type == "tree":
                out.extend(self.walk(entry.sha, path + "/", True))
        return out

    def ancestors(self, sha: str) -> list[str]:
        """sha and every ancestor, nearest first (breadth first)."""
        seen: dict[str, None] = {}
        queue = [sha]
        while queue:
            current = queue.pop(0)
            if current in seen or current not in self.commits:
                continue
            seen[current] = None
            queue.extend(self.commits[current].parents)
        return list(seen)

    def is_ancestor(self, maybe: str, of: str) -> bool:
        return maybe in self.ancestors(of)

    def merge_base(self, a: str, b: str) -> str | None:
        mine = set(self.ancestors(a))
        for sha in self.ancestors(b):
            if sha in mine:
                return sha
        return None

    def commits_between(self, base: str | None, head: str) -> list[str]:
        """Commits reachable from head but not from base, oldest first."""
        exclude = set(self.ancestors(base)) if base else set()
        return [sha for sha in reversed(self.ancestors(head)) if sha not in exclude]


def diff_files(old: dict[str, bytes], new: dict[str, bytes]) -> list[dict[str, object]]:
    """GitHub's diff entries (filename, status, additions, deletions, changes, patch, sha)."""
    out: list[dict[str, object]] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        status = "added" if before is None else "removed" if after is None else "modified"
        a = (before or b"").decode("utf-8", "replace").splitlines()
        b = (after or b"").decode("utf-8", "replace").splitlines()
        lines = list(difflib.unified_diff(a, b, lineterm="", n=3))[2:]
        additions = sum(1 for line in lines if line.startswith("+"))
        deletions = sum(1 for line in lines if line.startswith("-"))
        out.append(
            {
                "filename": path,
                "status": status,
                "additions": additions,
                "deletions": deletions,
                "changes": additions + deletions,
                "patch": "\n".join(lines),
                "sha": blob_sha(after if after is not None else before or b""),
            }
        )
    return out


def three_way(
    base: dict[str, bytes], ours: dict[str, bytes], theirs: dict[str, bytes]
) -> tuple[dict[str, bytes], list[str]]:
    """Merge by whole files: (merged files, conflicting paths)."""
    merged: dict[str, bytes] = {}
    conflicts: list[str] = []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t:
            result = o
        elif o == b:
            result = t
        elif t == b:
            result = o
        else:
            conflicts.append(path)
            result = o
        if result is not None:
            merged[path] = result
    return merged, conflicts
