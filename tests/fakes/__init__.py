"""Fakes of the outside world that answer like the real thing. GitHub is one shared fake.

The rule: GitHub is one shared fake in tests/ that answers like GitHub and checks
every request against GitHub's published OpenAPI description; webhook inputs are
the real example payloads of @octokit/webhooks-examples. A test that would pass
against a broken product is a defect.

Modules
-------
``fakes.openapi``   GitHub's OpenAPI description (@octokit/openapi, parsed once per
                    process, ~0.3 s) as a request checker: ``spec().check(method, raw_path,
                    query, body) -> [Violation]``, ``spec().match(...)``, ``check_response``.
``fakes.github``    ``FakeGitHub``: the stateful fake server (aiohttp, own thread, 127.0.0.1).
``fakes.webhooks``  real webhook payloads, signing, and builders that describe the fake.
``fakes.gitobjects`` real git blob/tree/commit ids, merge base, three-way merge, diffs.

Fixtures (tests/conftest.py)
----------------------------
``github_server`` (session)  the started FakeGitHub.
``github``                   the same server with fresh state; FAILS the test at teardown when
                             ``github.violations`` is not empty (message lists them).
``github_env``               ``github`` + env GITHUB_API_URL, GITHUB_APP_ID,
                             GITHUB_APP_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET (= conftest.WEBHOOK_SECRET).

FakeGitHub at a glance
----------------------
Identity: ``url`` (base_url / GITHUB_API_URL, no /api/v3), ``app_id`` (424242), ``app_slug``
("lemi"), ``bot_login`` ("lemi[bot]"), ``private_key_pem``, ``public_key_pem``,
``app_jwt(iat=, exp=, iss=, key=)``.

Setup: ``add_installation(account, repos=(), account_type="Organization", permissions=None)
-> id`` (repos: names or full names, created when missing) ·
``add_repo(full_name, files=None, default_branch="main", installation=None, private=True,
merge_methods=("merge","squash","rebase"), empty=False) -> Repo`` ·
``commit(full_name, branch, files, message=, author="octocat") -> sha`` (None deletes a path;
branch created from the default branch) · ``create_branch(full_name, branch, from_ref=None)`` ·
``open_pull_request(full_name, head_branch, files=None, base=None, from_fork=False,
user="octocat", title=None, body="", draft=False) -> number`` · ``open_issue(full_name, ...)`` ·
``add_comment(full_name, number, body, user="octocat", user_type="User") -> id`` ·
``merge_pull_request(full_name, n, merge_method="merge", user="octocat")`` (a human merges) ·
``close_pull_request(full_name, n)`` · ``set_unmergeable(full_name, n, message)`` (merge -> 405) ·
``set_permission(full_name, login, role)`` (admin|maintain|write|triage|read|none) ·
``add_user_token(token, login, expires_in=None)`` (personal token, e.g. GH_AUTH_TOKEN) ·
``installation_token(id, repositories=None, ttl=None) -> "ghs_..."`` ·
``app_changes`` (fields of ``GET /app`` replaced, e.g. ``permissions``, ``events``) · ``hook_config``
(``GET /app/hook/config``: url, content_type, secret ``"********"`` while one is set, insecure_ssl) · ``expire_token(token)`` ·
``token_ttl`` (s, default 3600) · ``add_delivery(event, action=None, guid=, status_code=200,
installation_id=, repository=, redelivery=False, payload=) -> id`` · ``on_redelivery`` (callback
run in a thread for POST /app/hook/deliveries/{id}/attempts), ``redelivered``.

Faults: ``fail_next(method, path_regex, status=502, times=1, headers=None, body=None)``
(method "*" = any; ``re.search`` on the decoded path) · ``secondary_rate_limit(method,
path_regex, times=1, retry_after=1)`` (403 + retry-after) · ``primary_rate_limit(...)``
(403 + x-ratelimit-remaining: 0).

Secondary limits (always on): per installation (or user), more than ``secondary_limits``
((80, 500): a minute, an hour) POST/PATCH/PUT/DELETE requests get 403 + ``retry-after`` +
"You have exceeded a secondary rate limit..."; ``secondary_limited()`` lists those calls
(``Call.limited``). Time: ``fake.clock`` (``time.monotonic``); ``Clock()`` (``fakes.github``)
is one a test moves: ``fake.clock = clock.now``, ``clock.advance(s)``, ``await clock.sleep(s)``.

Reading: ``calls`` [Call(method, path, query, body, auth, token, installation_id, login,
operation, template, params, status, response)] · ``writes()`` · ``calls_to(method, glob)`` ·
``describe_calls()`` · ``pull(full_name, n)`` / ``pulls(full_name, state="all")`` ·
``comments(full_name, n)`` [Comment(id, body, user, user_type, via_app, reactions)] ·
``check_runs(full_name, sha=None, name=None)`` [CheckRun(id, name, head_sha, status,
conclusion, output, annotations, external_id...)] · ``deployments(full_name)`` [Deployment(id,
sha, ref, environment, payload, description, statuses, state)] · ``file(full_name, ref, path)
-> str|None`` · ``files(full_name, ref)`` · ``branch_sha(full_name, branch)`` ·
``commit_info(full_name, ref)`` · ``repo(full_name)`` · ``deliveries``.
Waiting on background work: ``wait_for(predicate, timeout=5)`` / ``await await_for(...)``.
JSON shapes: ``pull_json``, ``repo_json``, ``user_json``, ``issue_json``, ``comment_json``,
``check_run_json``, ``deployment_json``, ``installation_json``, ``app_json``.

Violations: ``violations`` [Violation(method, path, kind, message, operation)], kinds
unknown-path (404), method (404), query (422), body (422), not-implemented (501),
response / fake-error (defects of the fake). ``expect_violations()`` (the fixture then
requires at least one instead of none) · ``take_violations()``.

Webhooks: ``example(event, action=None, index=0, with_installation=False)`` ·
``all_examples()`` · ``signed(event, payload, secret, delivery=None) -> (headers, body)`` ·
``retarget(fake, payload, full_name, sender=None, installation=None)`` ·
``for_pull_request(fake, full_name, number, action="opened", sender=None, before=None,
after=None)`` · ``for_push(fake, full_name, branch, before, after, sender="octocat")`` ·
``for_issue_comment(fake, full_name, number, comment_id, action="created", sender=None,
previous_body=None)``.
"""
