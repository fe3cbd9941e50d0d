"""The command lines of lemi's seed post, run verbatim: each line is split as a shell would
(shlex) and handed to lemi in a checkout of acme/demo-service, against moto's server (ECS
rollouts driven by tests/ecs_sim.py) or the GitHub fake. lemi.yml comes from LEMI_CONFIG, as
the lines name none; the checks are lemi's own output and what AWS or GitHub then holds.

Also here: what makes those lines work for every command (bot/cli/argv.py: ``-s=NAME``, a
trailing ``--config``), ``-c/--cluster`` only confirming lemi.yml, and the environment a line
that names none operates on.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import aws_world
import click
import ecs_sim
import pytest
from aws_world import ACCOUNT, CLUSTER, REGION, SERVICE
from checkout import make_checkout, write
from test_aws_operate import (  # noqa: F401  (fixtures)
    described,
    described_task,
    ecs_like,
    enable_exec,
    execute_command,
    expected_argv,
    no_traceback,
    plugin,
    plugin_argv,
    run_tasks,
    shared_botocore_models,
)

from bot.cli import argv, main
from bot.cli.base import cli

# the seed's two environments: staging in the account moto serves, prod in another
SEED_LEMI_YML = f"""\
infra:
  repository: acme/infra
domain: lemon
environments:
  staging:
    branch: develop
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
  prod:
    branch: main
    region: {REGION}
    account_id: "222222222222"
    cluster: {CLUSTER}
    protected: true
"""


def lemi_line(line: str) -> int:
    """One seed line, as a shell hands it to lemi."""
    words = shlex.split(line)
    assert words[0] == "lemi"
    return main(words[1:])


@pytest.fixture
def world(moto_reset: str, ecs_like: None) -> aws_world.World:  # noqa: F811
    return aws_world.build(moto_reset)


def _commands(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found.append(command)
        if isinstance(command, click.Group):
            found.extend(_commands(command))
    return found


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines name no --poll: lemi's default (seconds) shortened to 10 ms for the test."""
    for command in _commands(cli):
        for param in command.params:
            if param.name == "poll":
                monkeypatch.setattr(param, "default", 0.01)


@pytest.fixture
def seed_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """acme/demo-service with its deploy files, the CWD; lemi.yml in LEMI_CONFIG."""
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    root = make_checkout(tmp_path / "demo-service", "acme/demo-service")
    write(root, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    write(root, "deploy/demo-service/environment/staging.yaml", aws_world.STAGING_YAML)
    monkeypatch.setenv("LEMI_CONFIG", str(write(tmp_path, "lemi.yml", SEED_LEMI_YML)))
    monkeypatch.chdir(root)
    return root


def running_image(world: aws_world.World) -> str:
    arn = described(world)["taskDefinition"]
    definition = world.ecs().describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return str(definition["containerDefinitions"][0]["image"])


# ---- argv: -s=NAME and a trailing --config -----------------------------------------------


def test_short_options_with_an_equals_sign_lose_it_for_every_command() -> None:
    for command in _commands(cli):
        short = [o for p in command.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts]
        for opt in (o for o in short if len(o) == 2):
            parsed = argv.normalise(command, [f"{opt}=value"])
            assert parsed.args == [opt, "value"], (command.name, opt)


def test_argv_leaves_flags_values_and_the_command_line_of_exec_alone() -> None:
    exec_ = cli.commands["service"].commands["exec"]  # type: ignore[attr-defined]
    parsed = argv.normalise(exec_, ["-s=demo", "-c", "x", "/bin/sh", "-c=echo", "--config", "y"])
    assert parsed.args == ["-s", "demo", "-c", "x", "/bin/sh", "-c=echo", "--config", "y"]
    assert parsed.config is None
    parsed = argv.normalise(exec_, ["-s", "-x=1", "--", "sh", "-c=1"])
    assert parsed.args == ["-s", "-x=1", "--", "sh", "-c=1"]  # -x=1 is -s's value; after -- nothing moves
    verify = cli.commands["verify"]
    parsed = argv.normalise(verify, ["--check=spec", "-s=a=b", "--config=../lemi.yml"])
    assert parsed == argv.Parsed(["--check=spec", "-s", "a=b"], "../lemi.yml")


def test_config_after_the_subcommand(seed_checkout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = write(tmp_path, "other.yml", SEED_LEMI_YML.replace("domain: lemon", "domain: other"))
    assert main(["config", "check", "--config", str(other)]) == 0
    assert "domain other" in capsys.readouterr().out
    assert main(["service", "status", "--config", str(tmp_path / "absent.yml"), "-e", "staging"]) == 1
    assert "absent.yml" in capsys.readouterr().err


# ---- the operating lines ----------------------------------------------------------------


def test_seed_service_restart_with_the_cluster(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, quick_polls: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    sim.complete(after=1)
    before = sim.updates
    assert lemi_line(f"lemi service restart -s {SERVICE} -c {CLUSTER}") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert sim.updates == before + 1  # one forced new deployment, in staging (the first unprotected)
    assert described(world)["deployments"][0]["rolloutState"] == "COMPLETED"
    assert lemi_line(f"lemi service restart -s {SERVICE}") == 0


def test_seed_cluster_only_confirms_lemi_yml(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sim.updates
    for line in (
        f"lemi service restart -s {SERVICE} -c lemon-ecs-cluster-prod",
        f"lemi service list-tasks -s {SERVICE} -c lemon-ecs-cluster-prod",
        f"lemi verify -s={SERVICE} --cluster=lemon-ecs-cluster-prod --check=spec,provisioned -e=staging",
    ):
        assert lemi_line(line) == 2, line
        out, err = capsys.readouterr()
        assert "'lemon-ecs-cluster-prod' is not the cluster of environment staging" in err
        assert f"lemi.yml says '{CLUSTER}' (environments.staging.cluster)" in err
        no_traceback(out, err)
    assert sim.updates == before


def test_seed_list_tasks(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = run_tasks(sim, 3)
    assert lemi_line(f"lemi service list-tasks -s {SERVICE} -c {CLUSTER}") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    for task in mine:
        row = next(line for line in out.splitlines() if task.id in line)
        assert "RUNNING" in row


def test_seed_stop_task_takes_the_environment_from_the_arn(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, spared = run_tasks(sim, 2)
    assert target.task_arn == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{target.id}"
    assert lemi_line(f"lemi service stop-task --task-id {target.task_arn}") == 0
    out, err = capsys.readouterr()
    assert f"stopped task {target.id} of {SERVICE} in staging" in out
    no_traceback(out, err)
    assert described_task(world, target.id)["desiredStatus"] == "STOPPED"
    assert described_task(world, spared.id)["desiredStatus"] == "RUNNING"


def test_stop_task_of_an_arn_no_environment_has(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (task,) = run_tasks(sim, 1)
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/lemon-ecs-cluster-prod/{task.id}"
    assert lemi_line(f"lemi service stop-task --task-id {arn}") == 2
    err = capsys.readouterr().err
    assert f"no environment in lemi.yml has account {ACCOUNT}, region {REGION}, cluster lemon-ecs-cluster-prod" in err
    assert described_task(world, task.id)["desiredStatus"] == "RUNNING"


def test_seed_exec_with_the_cluster_and_a_command_without_dashes(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, plugin: Path, tmp_path: Path,  # noqa: F811
    execute_command: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:  # fmt: skip
    enable_exec(sim)
    (task,) = run_tasks(sim, 1)
    assert lemi_line(f"lemi service exec -s {SERVICE} -c {CLUSTER} /bin/bash") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert [c["command"] for c in execute_command] == ["/bin/bash"]
    assert plugin_argv(tmp_path) == expected_argv(plugin, task)
    assert lemi_line(f"lemi service exec -s {SERVICE}") == 0  # the seed's first form: a shell
    assert lemi_line(f"lemi service exec -s {SERVICE} --task-id {task.id} -- sh -c 'echo a'") == 0
    assert [c["command"] for c in execute_command][1:] == ["/bin/sh", "sh -c 'echo a'"]


def test_seed_service_deploy_with_a_tag(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, quick_polls: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=1)
    assert lemi_line(f"lemi service deploy -s {SERVICE} --tag v2") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert running_image(world).endswith(f"/{SERVICE}:v2")
    # with the checks of a deploy: a tag that was never built registers nothing
    assert lemi_line(f"lemi service deploy -s {SERVICE} --tag v3") == 1
    assert "v3" in capsys.readouterr().err
    assert running_image(world).endswith(f"/{SERVICE}:v2")


# ---- the deploy workflow: verify, compile, cat, deploy -----------------------------------


def test_seed_deploy_workflow(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, quick_polls: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    env = {"SERVICE": SERVICE, "CLUSTER": CLUSTER, "ENV": "staging", "IMAGE_TAG": "v2"}
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=1)

    def expand(line: str) -> str:
        for name, value in env.items():
            line = line.replace(f"${name}", value)
        return line

    assert lemi_line(expand("lemi verify -s=$SERVICE --cluster=$CLUSTER --check=spec,provisioned -e=$ENV")) == 0
    out, err = capsys.readouterr()
    assert f"ok: {SERVICE} (spec, provisioned) in staging" in out
    no_traceback(out, err)

    written = seed_checkout / "task-definition.json"
    written.write_text("an earlier one\n", encoding="utf-8")
    assert lemi_line(expand("lemi compile -t=$IMAGE_TAG -s=$SERVICE -e=$ENV")) == 0
    out, err = capsys.readouterr()
    assert out == written.read_text(encoding="utf-8")  # printed, and `cat task-definition.json` shows the same
    definition = json.loads(out)
    assert definition["family"] == f"{SERVICE}-staging"
    assert definition["containerDefinitions"][0]["image"].endswith(f"/{SERVICE}:v2")

    assert lemi_line(expand("lemi deploy -s=$SERVICE --cluster=$CLUSTER")) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert running_image(world).endswith(f"/{SERVICE}:v2")
    assert described(world)["taskDefinition"].startswith(
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{SERVICE}-staging:"
    )


def test_deploy_of_the_file_has_the_checks_of_a_tag_deploy(
    world: aws_world.World, sim: ecs_sim.Sim, seed_checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = described(world)["taskDefinition"]
    assert lemi_line(f"lemi compile -t=never-built -s={SERVICE} -e=staging") == 0
    capsys.readouterr()
    assert lemi_line(f"lemi deploy -s={SERVICE} --cluster={CLUSTER}") == 1
    out, err = capsys.readouterr()
    assert "never-built" in out + err
    no_traceback(out, err)
    assert described(world)["taskDefinition"] == before


def test_deploy_takes_the_environment_from_the_family(seed_checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No AWS is reached: the file's family decides the environment before anything is called."""
    (seed_checkout / "task-definition.json").write_text(json.dumps({"family": f"{SERVICE}-qa"}), encoding="utf-8")
    assert lemi_line(f"lemi deploy -s={SERVICE} --cluster={CLUSTER}") == 2
    err = capsys.readouterr().err
    assert f"has family '{SERVICE}-qa', which is no environment's of service {SERVICE}" in err
    assert f"{SERVICE}-staging, {SERVICE}-prod" in err
    (seed_checkout / "task-definition.json").write_text(json.dumps({"family": f"{SERVICE}-prod"}), encoding="utf-8")
    assert lemi_line(f"lemi deploy -s={SERVICE} --cluster=lemon-ecs-cluster-prod") == 2
    assert "not the cluster of environment prod" in capsys.readouterr().err
    (seed_checkout / "task-definition.json").unlink()
    assert lemi_line(f"lemi deploy -s={SERVICE} --cluster={CLUSTER}") == 2
    assert "there is no ./task-definition.json here" in capsys.readouterr().err


def test_compile_to_a_file_of_its_own(seed_checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lemi_line("lemi compile -t=v2 -o=td.json") == 0  # -e: the first unprotected environment
    out = capsys.readouterr().out
    assert out == (seed_checkout / "td.json").read_text(encoding="utf-8")
    assert json.loads(out)["family"] == f"{SERVICE}-staging"
    assert not (seed_checkout / "task-definition.json").exists()
    assert lemi_line("lemi compile -t=v2 -o -") == 0
    assert json.loads(capsys.readouterr().out)["family"] == f"{SERVICE}-staging"
    assert not (seed_checkout / "task-definition.json").exists() and not (seed_checkout / "-").exists()


# ---- service new and provision ----------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "line", "desired"),
    [
        (
            "acme/example",
            "lemi service new --service example --cpu 512 --memory 1024 --desired-count 3 --owner infra",
            3,
        ),
        (
            "acme/demo-service",
            "lemi service new --cpu 512 --memory 1024 --owner infra --service demo-service --desired-count 1",
            1,
        ),
    ],
)
def test_seed_service_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: str, line: str, desired: int,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    root = make_checkout(tmp_path / repo.split("/")[1], repo)
    monkeypatch.chdir(root)
    assert lemi_line(line) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    name = repo.split("/")[1]
    service_yaml = (root / "deploy" / name / "service.yaml").read_text(encoding="utf-8")
    assert f"name: {name}" in service_yaml and "owner: infra" in service_yaml
    assert f"desiredCount: {desired}" in service_yaml and "cpu: 512" in service_yaml and "memory: 1024" in service_yaml
    assert (root / "deploy" / name / "environment" / "staging.yaml").is_file()
    assert (root / "deploy" / name / "environment" / "prod.yaml").is_file()
    workflows = {p.name for p in (root / ".github" / "workflows").iterdir()}
    assert any(n.startswith("build") for n in workflows) and any(n.startswith("test") for n in workflows)
    assert main(["verify", "-s", name]) == 0  # what it wrote is a valid service


def test_seed_provision_line(
    github: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app_harness import LEMI_YML, setup_repos
    from test_provision_flow import BRANCH, INFRA, TF, only_infra_pr, open_service_pr

    setup_repos(github)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GH_AUTH_TOKEN", github.add_user_token("ghp_seedlinetoken", "octocat"))
    monkeypatch.setenv("LEMI_CONFIG", str(write(tmp_path, "lemi.yml", LEMI_YML)))
    monkeypatch.chdir(make_checkout(tmp_path / "demo-service", "acme/demo-service"))
    n = open_service_pr(github)
    line = f"lemi provision --prId {n} --repoName demo-service --currentBranchName {BRANCH} --service demo-service"
    assert lemi_line(line) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    infra = only_infra_pr(github)
    assert "demo-service: infra pull request" in out and infra.head_ref == "lemi/demo-service"
    assert f"acme/demo-service#{n}" in (infra.body or "")
    assert github.file(INFRA, "lemi/demo-service", TF)
    # a branch that is not the pull request's: said so, nothing more written
    assert lemi_line(line.replace(BRANCH, "other-branch")) == 2
    assert f"is branch '{BRANCH}', not 'other-branch'" in capsys.readouterr().err
    assert len(github.calls_to("POST", f"/repos/{INFRA}/pulls")) == 1


def test_provision_bare_repo_name_needs_a_remote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GH_AUTH_TOKEN", "unused")
    bare = tmp_path / "no-remote"
    bare.mkdir()
    monkeypatch.chdir(bare)
    assert lemi_line("lemi provision --prId 3 --repoName demo-service --service demo-service") == 2
    assert "names no owner" in capsys.readouterr().err
