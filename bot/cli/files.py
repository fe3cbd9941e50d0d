"""Commands on the files of a service repository: verify, compile, schema,
config check and service new. No network: they read the disk and lemi.yml.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from bot.aws.clients import AwsClients
from bot.aws.verify import Finding, verify_provisioned
from bot.cli import render, workspace
from bot.cli.base import (
    State,
    build_checks,
    check_cluster,
    cli,
    emit_json,
    load_service,
    pass_state,
    pick_environment,
    pick_service,
    report_invalid,
    repository,
    run_aws,
    service,
)
from bot.cli.options import (
    TASK_DEFINITION_FILE,
    cluster_option,
    env_option,
    image_tag,
    optional_image_tag,
    output_option,
    repo_option,
)
from bot.core import scaffold as scaffolding
from bot.core.compile import compile_for
from bot.core.problems import Invalid
from bot.core.schema import SCHEMAS, schema_for
from bot.core.spec import ServiceFiles

CHECKS = ("spec", "provisioned")


def _checks(value: str) -> list[str]:
    names = [c.strip() for c in value.split(",") if c.strip()]
    for name in names:
        if name not in CHECKS and name != "all":
            raise click.BadParameter(f"unknown check {name!r}; available: {', '.join(CHECKS)}, all")
    return list(CHECKS) if "all" in names else names


@cli.command()
@click.option("-s", "--service", help="Service to verify (default: every service under deploy/).")
@click.option("-e", "--env", "env", help="Environment (needed for `provisioned`; default: the first unprotected).")
@cluster_option
@click.option(
    "--check",
    "checks",
    default="spec",
    show_default=True,
    metavar="LIST",
    help=f"Comma-separated checks: {', '.join(CHECKS)}, or all.",
)
@click.option("-t", "--tag", callback=optional_image_tag, help="Image tag to look for in ECR.")
@click.option("--wait-image", type=click.FloatRange(min=0), default=0, help="Seconds to wait for the image to appear.")
@repo_option
@output_option
@pass_state
def verify(
    state: State, service: str | None, env: str | None, cluster: str | None, checks: str, tag: str | None, wait_image: float,
    repo: str | None, output: str,
) -> None:  # fmt: skip
    """Check a service before lemi deploys it.

    \b
    spec:        service.yaml and every environment file are valid, the service
                 is named after the repository, cpu/memory is a Fargate size.
    provisioned: the cluster and ECS service exist and are ACTIVE, every secret
                 (and JSON key) and parameter exists, and with -t the image tag
                 is in ECR (--wait-image waits for the build).
    """
    selected = _checks(checks)
    root = workspace.repo_root()
    repo_name = repository(root, repo)
    config = state.config() if "provisioned" in selected else state.optional_config()
    services = [pick_service(root, service)] if service else workspace.list_services(root)
    if not services:
        raise click.UsageError("no service here: there is no deploy/<service>/service.yaml")
    env_name = pick_environment(config, env) if config is not None and "provisioned" in selected else env
    if cluster is not None:
        if config is None:
            raise click.UsageError("-c/--cluster is checked against lemi.yml, and there is none here; pass --config")
        check_cluster(config, pick_environment(config, env), cluster)
    problems = []
    loaded: dict[str, ServiceFiles] = {}
    for name in services:
        try:
            loaded[name] = load_service(root, name, repo_name, config)
        except Invalid as exc:
            problems.extend(exc.problems)
    if "spec" in selected and env is not None and config is not None:  # -e ENV: its file must be there
        named = pick_environment(config, env)
        problems.extend(p for files in loaded.values() for p in files.missing_environments([named]))
    if problems:
        report_invalid(Invalid(problems), output, services=services, checks=selected)
    findings: list[Finding] = []
    if "provisioned" in selected:
        assert config is not None and env_name is not None

        async def work(aws: AwsClients) -> list[Finding]:
            results = await asyncio.gather(
                *(
                    verify_provisioned(aws, env_name, files, tag=tag, image_wait_seconds=wait_image)
                    for files in loaded.values()
                )
            )
            return [f for result in results for f in result]

        findings = run_aws(config, work)
    if findings:
        render.findings(
            findings, output, tail="", build_checks=build_checks(root, findings), services=services,
            checks=selected, environment=env_name, problems=[],
        )  # fmt: skip
        raise click.exceptions.Exit(1)
    if output == "json":
        extra: dict[str, object] = {"environment": env_name, "findings": []} if "provisioned" in selected else {}
        emit_json({"ok": True, "services": services, "checks": selected, "problems": [], **extra})
    else:
        where = f" in {env_name}" if "provisioned" in selected else ""
        for name in services:
            click.echo(f"ok: {name} ({', '.join(selected)}){where}")


@cli.command("compile")
@click.option("-s", "--service", help="Service (default: the repository's only service).")
@env_option
@click.option("-t", "--tag", required=True, callback=image_tag, help="Image tag (the commit SHA).")
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False, writable=True), default=TASK_DEFINITION_FILE, show_default=True,
    help="Write the JSON here, replacing the file (- for stdout only).",
)  # fmt: skip
@repo_option
@pass_state
def compile_command(state: State, service: str | None, env: str | None, tag: str, out: str, repo: str | None) -> None:
    """Compile the ECS task definition of a service for one environment.

    The JSON is written to ./task-definition.json (or -o FILE), which `lemi
    deploy` deploys, and printed on stdout. It is the input of
    RegisterTaskDefinition and is byte-identical for the same files, lemi.yml
    and tag.
    """
    config = state.config()
    env = pick_environment(config, env)
    root = workspace.repo_root()
    name = pick_service(root, service)
    try:
        files = load_service(root, name, repository(root, repo), config)
    except Invalid as exc:
        report_invalid(exc, "text")
    text = compile_for(config, files, env, tag).render()
    if out != "-":
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    click.echo(text, nl=False)


@cli.command()
@click.argument("kind", type=click.Choice(sorted(SCHEMAS)))
def schema(kind: str) -> None:
    """Print the JSON Schema of service.yaml, environment files or lemi.yml."""
    click.echo(json.dumps(schema_for(kind), indent=2, sort_keys=True))


@cli.group()
def config() -> None:
    """lemi.yml, the App's configuration."""


@config.command("check")
@output_option
@pass_state
def config_check(state: State, output: str) -> None:
    """Validate lemi.yml and summarise it."""
    try:
        cfg = state.config()
    except Invalid as exc:
        report_invalid(exc, output)
    if output == "json":
        emit_json({"ok": True, "config": cfg.model_dump(mode="json", by_alias=True), "problems": []})
        return
    click.echo(f"ok: infra repository {cfg.infra.repository}, domain {cfg.domain}")
    for name, env in cfg.environments.items():
        flags = " (protected)" if env.protected else ""
        click.echo(f"  {name}: branch {env.branch} -> {env.cluster} in {env.account_id}/{env.region}{flags}")


@service.command("new")
@click.option("-s", "--service", "name", required=True, help="Service name: the repository's name or <repo>-<suffix>.")
@click.option("--owner", required=True, help="Owning team (used in cost and ownership tags).")
@click.option("--cpu", type=int, default=512, show_default=True, help="CPU units (1024 = 1 vCPU).")
@click.option("--memory", type=int, default=1024, show_default=True, help="Memory in MiB (a Fargate pair with --cpu).")
@click.option("--desired-count", type=int, default=1, show_default=True, help="Tasks to run.")
@click.option("--image", help="ECR repository name (default: the service name).")
@click.option(
    "--test-command",
    default=scaffolding.DEFAULT_TEST_COMMAND,
    show_default=True,
    help="The command the test workflow runs; the image is built only if it passes.",
)
@click.option(
    "--force", is_flag=True, help="Rewrite generated files (workflows, schemas) that differ; never those in deploy/."
)
@repo_option
@output_option
@pass_state
def service_new(
    state: State,
    name: str,
    owner: str,
    cpu: int,
    memory: int,
    desired_count: int,
    image: str | None,
    test_command: str,
    force: bool,
    repo: str | None,
    output: str,
) -> None:
    """Scaffold deploy/<service>/ and the GitHub workflows of a new service.

    A file that exists and differs is kept (and said so); --force rewrites the
    generated ones but never the service's files under deploy/.
    """
    root = workspace.repo_root()
    config = state.optional_config()
    try:
        files = scaffolding.scaffold(
            service=name,
            owner=owner,
            cpu=cpu,
            memory=memory,
            desired_count=desired_count,
            image=image,
            repository=repository(root, repo),
            config=config,
            test_command=test_command,
        )
    except scaffolding.ScaffoldError as exc:
        raise click.BadParameter(exc.message, param_hint=exc.option) from None
    plan = scaffolding.plan(root, files, force=force)
    scaffolding.write(root, files, plan)
    contract = scaffolding.contract(name, test_command)
    if output == "json":
        steps = [{"path": s.path, "action": s.action, "why": s.why} for s in plan.steps]
        emit_json(
            {"ok": True, "files": steps, "contract": [c.strip().removeprefix("- ") for c in contract.splitlines()[1:]]}
        )
        return
    for step in plan.steps:
        click.echo(f"{step.action:>9}  {step.path}" + (f"  ({step.why})" if step.why else ""))
    if config is None:
        click.echo(
            "note: no lemi.yml found, so staging (develop) and prod (main) were assumed; the build workflow\n"
            "      reads LEMI_<ENV>_ACCOUNT_ID and LEMI_<ENV>_REGION from the repository's Actions variables",
            err=True,
        )
    click.echo(f"next: commit deploy/{name}/, .github/ and .lemi/, push, and open a pull request", err=True)
    click.echo(contract.rstrip("\n"), err=True)
