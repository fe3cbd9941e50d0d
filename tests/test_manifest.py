"""app.yml asks for exactly the events the handlers take and the permissions the code uses."""

from __future__ import annotations

from pathlib import Path

import yaml

import handlers

MANIFEST = Path(__file__).resolve().parent.parent / "app.yml"


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_events_are_exactly_the_handled_ones() -> None:
    handled = set(handlers.router._shallow_routes) | set(
        handlers.router._deep_routes
    )  # gidgethub has no public listing
    assert set(manifest()["default_events"]) == handled == {"pull_request", "push", "issue_comment"}


def test_permissions_are_the_ones_the_code_needs() -> None:
    assert manifest()["default_permissions"] == {
        "contents": "write",  # infra branch and file; reading deploy/ files
        "pull_requests": "write",  # open, update, merge and close pull requests
        "issues": "write",  # comments and reactions on pull requests
        "checks": "write",  # lemi / spec, lemi / provision, lemi / deploy (<env>)
        "deployments": "write",  # GitHub Deployments and their statuses
        "metadata": "read",  # required by GitHub; collaborator permission look-ups
    }
    assert manifest()["hook_attributes"]["url"].endswith("/webhook")
