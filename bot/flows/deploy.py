"""A deploy as the App runs it: on a push, or for ``/lemi deploy``.

verify -> compile -> plan -> execute (deploy, wait), reported on a GitHub Deployment (with the
environment URL) and a check run. Every step finds what an earlier attempt
made (the Deployment, the check run, the registered revision), so a retried
job picks up where it was instead of doing things twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from bot.aws import schedules
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, revision_of
from bot.aws.operate import definition_diff
from bot.aws.predeploy import commands, execute_after_tasks
from bot.aws.rollout import (
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    DeployResult,
    Plan,
    RolloutRequest,
    Situation,
    Started,
    Wait,
    plan,
    survey,
)
from bot.aws.tasks import TaskWait
from bot.aws.verify import Finding, verify_provisioned
from bot.core.compile import compile_for
from bot.core.config import Config
from bot.core.conventions import internal_url
from bot.core.findings import BUILD_MAY_HAVE_FAILED, image_never_arrived
from bot.core.github_web import commit_checks, repository_url
from bot.core.problems import Invalid, Problem, problems_text
from bot.core.schedules import ScheduledTask, SyncReport, scheduled_tasks
from bot.core.spec import parse_service_files
from bot.core.templating import render
from bot.github import checks
from bot.github.client import GitHub
from bot.github.contents import read_service_files, repo_vars
from bot.github.errors import GitHubError
from bot.github.owners import Owners
from bot.store.jobs import DeployRequest as DeployRequest  # what a deploy job asks for

# how old the verification's description of the service may be for the plan to use it
DESCRIPTION_FRESH_SECONDS = 5.0


def check_name(repository: str, service: str, env: str) -> str:
    """``lemi / deploy (<env>)``; extra services of a repository add their name."""
    repo = repository.split("/", 1)[1].lower()
    return f"lemi / deploy ({env})" if service == repo else f"lemi / deploy ({env}) {service}"


async def find_or_create_deployment(gh: GitHub, req: DeployRequest, config: Config) -> dict[str, Any]:
    task = f"deploy:{req.service}"
    found = await gh.getitem(
        "/repos/{owner}/{repo}/deployments{?sha,environment,task,per_page}",
        repo_vars(req.repository, sha=req.sha, environment=req.environment, task=task, per_page=10),
    )
    for deployment in found or []:
        if (deployment.get("payload") or {}).get("tag", req.tag) == req.tag:
            return dict(deployment)
    return dict(
        await gh.post(
            "/repos/{owner}/{repo}/deployments",
            repo_vars(req.repository),
            data={
                "ref": req.sha,
                "task": task,
                "environment": req.environment,
                "auto_merge": False,
                "required_contexts": [],
                "payload": {"service": req.service, "tag": req.tag},
                "description": f"{req.service} {req.tag[:12]} ({req.source} by {req.requested_by})"[:140],
                "production_environment": config.environment(req.environment).protected,
            },
        )
    )


async def deployment_status(
    gh: GitHub, req: DeployRequest, deployment_id: int, state: str, description: str, *,
    environment_url: str | None = None, log_url: str | None = None,
) -> None:  # fmt: skip
    data: dict[str, Any] = {"state": state, "description": description[:140], "environment": req.environment}
    if state == "success":
        # GitHub would mark every other service's deployment in this environment inactive;
        # lemi retires only this service's previous one (retire_previous)
        data["auto_inactive"] = False
    if environment_url:
        data["environment_url"] = environment_url
    if log_url:
        data["log_url"] = log_url
    await gh.post(
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        repo_vars(req.repository, deployment_id=deployment_id),
        data=data,
    )


ROLLING_OUT = "rolling out "


async def _rollout_started(gh: GitHub, req: DeployRequest, deployment_id: int) -> bool:
    statuses = await gh.getitem(
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses{?per_page}",
        repo_vars(req.repository, deployment_id=deployment_id, per_page=100),
    )
    return any((s.get("description") or "").startswith(ROLLING_OUT) for s in statuses or [])


async def branch_moved(gh: GitHub, req: DeployRequest) -> bool:
    """Has the environment branch moved past this push? (A newer push will deploy.)"""
    if not req.branch:
        return False
    try:
        ref = await gh.getitem(
            "/repos/{owner}/{repo}/git/ref/{+ref}", repo_vars(req.repository, ref=f"heads/{req.branch}")
        )
    except GitHubError as exc:
        if exc.status_code >= 500:
            raise
        return False
    return str(ref["object"]["sha"]) != req.sha


async def _recent_deployments(gh: GitHub, req: DeployRequest) -> list[dict[str, Any]]:
    found = await gh.getitem(
        "/repos/{owner}/{repo}/deployments{?environment,task,per_page}",
        repo_vars(req.repository, environment=req.environment, task=f"deploy:{req.service}", per_page=5),
    )
    return sorted(found or [], key=lambda d: int(d["id"]), reverse=True)


async def newer_deployment_exists(gh: GitHub, req: DeployRequest, deployment_id: int) -> bool:
    """Did a later deploy of this service to this environment start after ours was created?"""
    return any(int(d["id"]) > deployment_id for d in await _recent_deployments(gh, req))


async def retire_previous(gh: GitHub, req: DeployRequest, deployment_id: int) -> None:
    """Mark this service's previous live deployment in the environment inactive."""
    for deployment in await _recent_deployments(gh, req):
        if int(deployment["id"]) >= deployment_id:
            continue
        statuses = await gh.getitem(
            "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses{?per_page}",
            repo_vars(req.repository, deployment_id=deployment["id"], per_page=1),
        )
        if statuses and statuses[0].get("state") == "success":
            await gh.post(
                "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                repo_vars(req.repository, deployment_id=deployment["id"]),
                data={"state": "inactive", "description": f"replaced by {req.tag[:12]}"[:140]},
            )
        return


@dataclass
class DeployReport:
    outcome: str  # success | failure | superseded | held | refused | watching
    summary: str
    result: DeployResult | None = None


@dataclass(frozen=True)
class Announced:
    """The GitHub side of a deploy: its Deployment and its check run."""

    deployment: dict[str, Any]
    run: dict[str, Any]

    @property
    def log_url(self) -> str | None:
        url = self.run.get("html_url")
        return str(url) if url else None


async def announce(gh: GitHub, config: Config, req: DeployRequest) -> Announced:
    """Find or create the Deployment and the check run, and say the deploy is verifying."""
    deployment = await find_or_create_deployment(gh, req, config)
    run = await checks.upsert_check_run(
        gh, req.repository, req.sha, check_name(req.repository, req.service, req.environment), status="in_progress",
        title=f"deploying {req.service} to {req.environment}", summary=render("checks/deploy_started.md.j2", req=req),
    )  # fmt: skip
    announced = Announced(deployment, run)
    await deployment_status(
        gh, req, deployment["id"], "in_progress", f"verifying {req.service}", log_url=announced.log_url
    )
    return announced


async def finish(
    gh: GitHub, config: Config, req: DeployRequest, announced: Announced,
    conclusion: str, title: str, state: str, description: str, **values: Any,
) -> DeployReport:  # fmt: skip
    """End the check run and the Deployment (retiring the service's previous one on success)."""
    url = internal_url(req.service, req.environment, config.domain)
    summary = render("checks/deploy.md.j2", req=req, conclusion=conclusion, url=url, **values)
    await checks.upsert_check_run(
        gh, req.repository, req.sha, check_name(req.repository, req.service, req.environment), status="completed",
        conclusion=conclusion, title=title, summary=summary, problems=values.get("problems"),
        run_id=announced.run["id"],
    )  # fmt: skip
    deployment_id = int(announced.deployment["id"])
    await deployment_status(
        gh, req, deployment_id, state, description,
        environment_url=url if state == "success" else None, log_url=announced.log_url,
    )  # fmt: skip
    if state == "success":
        await retire_previous(gh, req, deployment_id)
    outcome = {"success": "success", "inactive": "superseded"}.get(state, "failure")
    return DeployReport(outcome, summary, values.get("result"))


async def finish_rollout(
    gh: GitHub, config: Config, req: DeployRequest, announced: Announced, result: DeployResult, image: str,
    changes: str, schedules: SyncReport | None = None,
) -> DeployReport:  # fmt: skip
    """Report a rollout that ended (``result.rollout``), truthfully: only a completed one succeeds
    (``schedules``: what became of the schedules after it; a failure there is said, not a failed deploy)."""
    rollout = result.rollout
    revision = revision_of(result.task_definition)
    values = dict(result=result, revision=revision, image=image, changes=changes, rollout=rollout, schedules=schedules)
    if result.ok:
        unsynced = "; the schedules could not be updated" if schedules is not None and schedules.error else ""
        return await finish(
            gh, config, req, announced, "success", f"deployed {revision}{unsynced}", "success",
            f"{revision} running ({image.rsplit('/', 1)[-1]}){unsynced}", **values,
        )  # fmt: skip
    assert rollout is not None
    return await finish(
        gh, config, req, announced, "failure", f"rollout {rollout.outcome}: {rollout.reason}"[:255], "failure",
        f"{rollout.outcome}: {rollout.reason}", **values,
    )  # fmt: skip


async def finish_replaced(
    gh: GitHub, config: Config, req: DeployRequest, announced: Announced, by: str
) -> DeployReport:
    """A rollout a newer one (a deploy, a restart, a rollback) replaced in ECS before it ended:
    neither success nor failure."""
    return await finish(
        gh, config, req, announced, "cancelled", f"replaced by a newer rollout ({by})", "inactive",
        f"replaced by a newer rollout ({by}) while it rolled out", superseded=True, replaced_by=by,
    )  # fmt: skip


async def run_deploy(
    gh: GitHub,
    aws: AwsClients,
    config: Config,
    req: DeployRequest,
    *,
    owners: Owners,
    superseded: Callable[[], Awaitable[bool]],
    poll: float = DEFAULT_POLL,
    timeout: float = DEFAULT_TIMEOUT,
    released: bool = False,
    resumed: bool = False,
    watch: Watcher | None = None,
) -> DeployReport:
    """``released``: a deploy that was held by a lock; a later deploy of the service wins.
    ``resumed``: a retried job; if an earlier attempt already started the rollout (its
    Deployment says so, or its watch exists), the rollout is watched or reported, never sent again.
    ``watch``: hand the rollout to the watcher once UpdateService is sent (the report comes when
    it ends: outcome "watching"); without it the rollout is waited for here.

    The AWS work (verify, register, UpdateService) does not wait for the GitHub writes that
    announce the deploy: they run beside it, and the deploy waits for them only to report.

    A service another repository owns (:mod:`bot.core.ownership`) is not deployed: the check run
    says who owns it, and no Deployment is created and nothing is asked of AWS."""
    env = config.environment(req.environment)
    name = check_name(req.repository, req.service, req.environment)
    verdict = await owners.verdict(req.service, req.repository)
    if not verdict.allowed:
        summary = render("checks/deploy_refused.md.j2", req=req, why=verdict.why)
        await checks.upsert_check_run(
            gh, req.repository, req.sha, name, status="completed", conclusion="failure",
            title=f"not deployed: {req.service} belongs to {verdict.owner or 'another repository'}", summary=summary,
        )  # fmt: skip
        return DeployReport("refused", summary)
    announcing = asyncio.ensure_future(announce(gh, config, req))
    try:
        return await _deploy(
            gh, aws, config, req, env.image_wait_seconds, verdict.named_after, announcing,
            superseded=superseded, wait=Wait(timeout=timeout, poll=poll), released=released, resumed=resumed,
            watch=watch,
        )  # fmt: skip
    except BaseException:
        if not announcing.done():  # the deploy failed before it needed it: let the job's retry do it again
            announcing.cancel()
        raise


async def _deploy(
    gh: GitHub, aws: AwsClients, config: Config, req: DeployRequest, image_wait: float, named_after: bool,
    announcing: asyncio.Future[Announced], *, superseded: Callable[[], Awaitable[bool]], wait: Wait,
    released: bool, resumed: bool, watch: Watcher | None,
) -> DeployReport:  # fmt: skip
    async def stop_if_superseded() -> DeployReport | None:
        if await superseded() or (
            released and await newer_deployment_exists(gh, req, int((await announcing).deployment["id"]))
        ):
            return await finish(
                gh, config, req, await announcing, "cancelled", "superseded by a newer push", "inactive",
                "superseded by a newer push before it started rolling out", superseded=True,
            )  # fmt: skip
        return None

    if (stop := await stop_if_superseded()) is not None:
        return stop
    files_raw = await read_service_files(gh, req.repository, req.service, req.sha)
    try:  # CPU work, off the event loop
        files = await asyncio.to_thread(
            parse_service_files, req.service, files_raw, repository=req.repository if named_after else None,
            known_environments=list(config.environments),
        )  # fmt: skip
    except Invalid as exc:
        return await _fail_spec(gh, config, req, await announcing, exc.problems)
    described: dict[str, Any] = {}  # the service as verification found it, for the plan
    verifying = time.monotonic()
    findings: list[Finding] = await verify_provisioned(
        aws, req.environment, files, tag=req.tag, image_wait_seconds=image_wait, shared=aws.lookups,
        services=described,
    )  # fmt: skip
    if findings:
        described_findings = "; ".join(f"{f.check} {f.subject}" for f in findings)
        build_failed = image_never_arrived(findings)
        if build_failed:  # the image of the commit never arrived: say where its build says why
            described_findings = f"{BUILD_MAY_HAVE_FAILED}: {described_findings}"
        return await finish(
            gh, config, req, await announcing, "failure", f"{problems_text(len(findings))} before deploying", "failure",
            described_findings, findings=findings, build_failed=build_failed,
            build_checks=commit_checks(repository_url(gh.base_url, req.repository), req.tag) if build_failed else None,
        )  # fmt: skip
    compiled = compile_for(config, files, req.environment, req.tag)
    if (stop := await stop_if_superseded()) is not None:
        return stop
    ecs = await Ecs.open(aws, req.environment)
    already_sent = resumed and (
        (watch is not None and await watch.exists(req))
        or await _rollout_started(gh, req, int((await announcing).deployment["id"]))
    )
    request = RolloutRequest(
        req.service, compiled.task_definition, desired_count=compiled.desired_count, already_sent=already_sent
    )
    # the service, described once: by the verification, unless that was longer ago than a few seconds
    # (it waited for the image): ECS may have moved on since
    fresh = time.monotonic() - verifying < DESCRIPTION_FRESH_SECONDS
    situation = await survey(
        ecs, request, compare_running=True, described=described.get(req.service) if fresh else None
    )
    the_plan = plan(request, situation)
    image = compiled.image
    wanted = scheduled_tasks(files.service.spec.tasks, files.service.spec.schedules)  # made to match on success
    if watch is None:
        changes = _changes(situation, compiled.task_definition)
        if not request.already_sent:
            announced = await announcing
            await deployment_status(gh, req, announced.deployment["id"], "in_progress", ROLLING_OUT + req.tag[:12],
                                    log_url=announced.log_url)  # fmt: skip
        how = TaskWait(timeout=config.environment(req.environment).task_timeout_seconds, poll=wait.poll)
        pre_deploy = [] if request.already_sent else commands(files.service)
        result = await execute_after_tasks(ecs, request, the_plan, situation.service, pre_deploy, how, wait)
        synced = None
        if result.ok and result.rollout is not None:  # the schedules follow a completed rollout only
            synced = await schedules.sync_report(aws, req.environment, req.service, wanted, result.task_definition)
        return await finish_rollout(gh, config, req, await announcing, result, image, changes, synced)
    if not request.already_sent:  # preDeploy tasks, or another deploy's still running: the job ends here
        held = await watch.before_update(
            gh, config, ecs, req, announcing, situation, the_plan, pre_deploy=commands(files.service), image=image,
            changes=lambda: _changes(situation, compiled.task_definition), desired_count=compiled.desired_count,
            poll=wait.poll, schedules=wanted, released=released,
        )  # fmt: skip
        if held is not None:
            return held
    # the diff is for the report: made once UpdateService is sent, not before
    started = await watch.start(
        ecs, req, the_plan, image=image, changes=lambda: _changes(situation, compiled.task_definition), wait=wait,
        schedules=wanted,
    )  # fmt: skip
    if started.watching is None:  # an earlier attempt's rollout ended while lemi was not watching
        changes = _changes(situation, compiled.task_definition)
        return await finish_rollout(gh, config, req, await announcing, started.result, image, changes)

    async def announced_then_rolling_out() -> None:
        announced = await announcing
        await watch.announced(req, announced)
        if not request.already_sent:
            await deployment_status(gh, req, announced.deployment["id"], "in_progress", ROLLING_OUT + req.tag[:12],
                                    log_url=announced.log_url)  # fmt: skip

    # the job ends here: its GitHub writes may wait behind the installation's limits (a push of
    # many services), and nothing of the rollout waits for them; the watcher reports on them
    watch.detach(req, announced_then_rolling_out())
    return DeployReport("watching", "", started.result)


class Watcher(Protocol):
    """Where a deploy hands its rollout (bot/flows/watching.py)."""

    async def exists(self, req: DeployRequest) -> bool: ...

    async def before_update(
        self,
        gh: GitHub,
        config: Config,
        ecs: Ecs,
        req: DeployRequest,
        announcing: asyncio.Future[Announced],
        situation: Situation,
        the_plan: Plan,
        *,
        pre_deploy: list[tuple[str, list[str]]],
        image: str,
        changes: Callable[[], str],
        desired_count: int | None,
        poll: float,
        schedules: dict[str, ScheduledTask],
        released: bool = False,
    ) -> DeployReport | None:
        """Just before UpdateService: start the preDeploy tasks, or wait for another deploy's (the
        report says so: the job ends); None: send UpdateService."""
        ...

    async def start(
        self, ecs: Ecs, req: DeployRequest, plan: Plan, *, image: str, changes: Callable[[], str], wait: Wait,
        schedules: dict[str, ScheduledTask] | None,
    ) -> Started:  # fmt: skip
        """Carry ``plan`` out and watch its rollout; ``changes()``: the task-definition diff for the
        report, asked for once UpdateService is sent; ``schedules``: made to match once it completed."""
        ...

    async def announced(self, req: DeployRequest, announced: Announced) -> None: ...

    def detach(self, req: DeployRequest, announcing: Coroutine[Any, Any, None]) -> None:
        """Finish announcing the deploy after its job ended (the watcher waits for it)."""
        ...


def _changes(situation: Situation, compiled: dict[str, Any]) -> str:
    """How the running task definition differs from the compiled one, for the report ('' when identical)."""
    if situation.running is None:
        return ""
    return definition_diff(situation.running, compiled, revision_of(situation.service["taskDefinition"]))


async def _fail_spec(
    gh: GitHub, config: Config, req: DeployRequest, announced: Announced, problems: list[Problem]
) -> DeployReport:
    return await finish(
        gh, config, req, announced, "failure", "the service files are invalid", "failure",
        f"{problems_text(len(problems))} in the service files", problems=problems,
    )  # fmt: skip


async def report_gave_up(gh: GitHub, config: Config, req: DeployRequest, reason: str) -> None:
    """A deploy job that failed for good still ends its Deployment and check run."""
    deployment = await find_or_create_deployment(gh, req, config)
    await checks.upsert_check_run(
        gh, req.repository, req.sha, check_name(req.repository, req.service, req.environment),
        status="completed", conclusion="failure", title="lemi could not finish this deploy",
        summary=render("checks/deploy_gave_up.md.j2", req=req, reason=reason),
    )  # fmt: skip
    await deployment_status(gh, req, deployment["id"], "error", f"lemi gave up: {reason}")
