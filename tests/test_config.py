"""lemi.yml: the App's configuration, as the infra team writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkout import LEMI_YML

from bot.core.config import load_config, parse_config
from bot.core.conventions import internal_url
from bot.core.problems import Invalid, Problem

FILE = "lemi.yml"

EXAMPLE = LEMI_YML  # the README's lemi.yml
# value positions in EXAMPLE: repository 2:15, path 3:9, merge_method 4:17, domain 5:9,
# staging 8..12 (branch 8:13, region 9:13, account_id 10:17), prod 14..18 (branch 14:13)


def edit(old: str, new: str, text: str = EXAMPLE) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


def problems(text: str | bytes) -> list[Problem]:
    with pytest.raises(Invalid) as info:
        parse_config(text)
    assert info.value.problems
    return info.value.problems


def one(text: str | bytes) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def at(problem: Problem, path: str, line: int, column: int, file: str = FILE) -> None:
    assert (problem.file, problem.path, problem.line, problem.column) == (file, path, line, column), problem


# --- the example --------------------------------------------------------------------------


def test_the_example_parses() -> None:
    config = parse_config(EXAMPLE)
    assert config.infra.repository == "acme/infra"
    assert config.infra.path == "services/{service}.tf"
    assert config.infra.merge_method == "squash"
    assert config.domain == "lemon"
    assert list(config.environments) == ["staging", "prod"]
    staging, prod = config.environment("staging"), config.environment("prod")
    assert (staging.branch, staging.region, staging.account_id, staging.cluster) == (
        "develop",
        "us-east-1",
        "111111111111",
        "lemon-ecs-cluster",
    )
    assert staging.role_arn == "arn:aws:iam::111111111111:role/lemi-deployer"
    assert staging.protected is False
    assert (prod.account_id, prod.role_arn, prod.protected) == ("222222222222", None, True)
    assert prod.image_wait_seconds == 600
    # defaults of the optional datadog section
    assert config.datadog.site == "datadoghq.com"
    assert config.datadog.api_key_secret == "datadog/api-key"


def test_defaults_of_the_infra_section() -> None:
    config = parse_config(edit("  path: services/{service}.tf\n  merge_method: squash\n", ""))
    assert config.infra.path == "services/{service}.tf"
    assert config.infra.merge_method == "squash"


def test_bytes_are_accepted() -> None:
    assert parse_config(EXAMPLE.encode()).domain == "lemon"


@pytest.mark.parametrize(
    ("branch", "env"), [("develop", "staging"), ("main", "prod"), ("feature/x", None), ("Main", None), ("", None)]
)
def test_environment_for_branch(branch: str, env: str | None) -> None:
    assert parse_config(EXAMPLE).environment_for_branch(branch) == env


def test_urls_and_infra_file() -> None:
    config = parse_config(EXAMPLE)
    assert internal_url("demo-service", "prod", config.domain) == "https://demo-service-internal.prod.lemon"
    assert (
        internal_url("demo-service-worker", "staging", config.domain)
        == "https://demo-service-worker-internal.staging.lemon"
    )
    assert config.infra.file_for("demo-service") == "services/demo-service.tf"
    other = parse_config(edit("services/{service}.tf", "terraform/ecs/{service}/main.tf"))
    assert other.infra.file_for("demo-service") == "terraform/ecs/demo-service/main.tf"


# --- quoting ------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["111111111111", "011111111111"])
def test_an_unquoted_account_id_gets_a_quote_hint(written: str) -> None:
    problem = one(edit('"111111111111"', written))
    at(problem, "environments.staging.account_id", 10, 17)
    assert problem.message == f"expected a string, but {written!r} is read by YAML as a number"
    assert problem.hint == f'quote it: "{written}"'


@pytest.mark.parametrize("written", ['"1111"', '"1111111111111"', '"11111111111a"'])
def test_an_account_id_is_twelve_digits(written: str) -> None:
    problem = one(edit('"111111111111"', written))
    at(problem, "environments.staging.account_id", 10, 17)
    assert problem.message == f"{written.strip(chr(34))!r} is not a valid AWS account id"
    assert "twelve digits" in problem.hint


def test_a_branch_yaml_reads_as_a_boolean() -> None:
    problem = one(edit("branch: main", "branch: on"))
    at(problem, "environments.prod.branch", 14, 13)
    assert problem.hint == 'quote it: "on"'


def test_protected_must_be_a_boolean() -> None:
    problem = one(edit("protected: true", 'protected: "true"'))
    at(problem, "environments.prod.protected", 18, 16)
    assert "expected true or false" in problem.message
    assert parse_config(edit("protected: true", "protected: yes")).environment("prod").protected is True


# --- unknown keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "line", "column", "hint"),
    [
        ("merge_method:", "merge_methd:", "infra.merge_methd", 4, 3, "did you mean `merge_method`?"),
        (
            "  repository: acme/infra\n",
            "  repository: acme/infra\n  repositry: x\n",
            "infra.repositry",
            3,
            3,
            "did you mean `repository`?",
        ),
        (
            "  repository: acme/infra\n",
            "  repository: acme/infra\n  repo: x\n",
            "infra.repo",
            3,
            3,
            "allowed here: repository, path, merge_method, module_source, base_branch",
        ),
        (
            "    cluster: lemon-ecs-cluster\n    protected",
            "    cluster: lemon-ecs-cluster\n    protect",
            "environments.prod.protect",
            18,
            5,
            "did you mean `protected`?",
        ),
        ("    role_arn:", "    rolearn:", "environments.staging.rolearn", 12, 5, "did you mean `role_arn`?"),
        ("    account_id:", "    accountId:", "environments.staging.accountId", 10, 5, "did you mean `account_id`?"),
        (
            "domain: lemon\n",
            "domain: lemon\ndatadog:\n  sit: datadoghq.eu\n",
            "datadog.sit",
            7,
            3,
            "did you mean `site`?",
        ),
        (
            "domain: lemon\n",
            "domain: lemon\nzzz: 1\n",
            "zzz",
            6,
            1,
            "allowed here: infra, domain, environments, datadog, references",
        ),
    ],
)
def test_unknown_keys(old: str, new: str, path: str, line: int, column: int, hint: str) -> None:
    found = problems(edit(old, new))
    unknown = [p for p in found if p.message.startswith("unknown field")]
    assert len(unknown) == 1, found
    at(unknown[0], path, line, column)
    assert unknown[0].message == f"unknown field {path.rsplit('.', 1)[-1]!r}"
    assert unknown[0].hint == hint


def test_a_misspelt_required_key_is_also_reported_missing() -> None:
    found = problems(edit("domain:", "domian:"))
    assert [(p.path, p.line, p.message, p.hint) for p in found] == [
        ("", 1, "missing required field 'domain'", "add `domain:` here"),
        ("domian", 5, "unknown field 'domian'", "did you mean `domain`?"),
    ]


def test_a_missing_environment_field_points_at_the_environment() -> None:
    problem = one(edit("    cluster: lemon-ecs-cluster\n    protected", "    protected"))
    at(problem, "environments.prod", 14, 5)
    assert problem.message == "missing required field 'cluster'"
    assert problem.hint == "add `cluster:` here"


def test_an_empty_file() -> None:
    problem = one("")
    assert problem.message == "the file is empty"
    assert problem.hint == "it must hold infra, domain and environments"


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"])
def test_valid_regions(region: str) -> None:
    assert parse_config(edit("region: us-east-1", f"region: {region}")).environment("staging").region == region


@pytest.mark.parametrize("region", ["us-east", "US-EAST-1", "us-east-1a", "useast1", "'us east 1'"])
def test_bad_regions(region: str) -> None:
    problem = one(edit("region: us-east-1", f"region: {region}"))
    at(problem, "environments.staging.region", 9, 13)
    assert problem.message == f"{region.strip(chr(39))!r} is not a valid AWS region"
    assert problem.hint == "e.g. us-east-1"


@pytest.mark.parametrize("repository", ["infra", "acme/infra/x", "/infra", "acme/", "'acme/in fra'", "-acme/infra"])
def test_bad_infra_repository(repository: str) -> None:
    problem = one(edit("repository: acme/infra", f"repository: {repository}"))
    at(problem, "infra.repository", 2, 15)
    assert problem.message == f"{repository.strip(chr(39))!r} is not a valid repository"
    assert problem.hint == "write it as owner/name, e.g. acme/infra"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("services/x.tf", "must contain {service} once and end in .tf"),
        ("services/{service}.json", "must contain {service} once and end in .tf"),
        ("'{service}/{service}.tf'", "must contain {service} once and end in .tf"),
        ("../{service}.tf", "is not a safe relative path"),
        ("a/../{service}.tf", "is not a safe relative path"),
        ("/services/{service}.tf", "is not a safe relative path"),
        ("'services/\"{service}.tf'", "is not a safe relative path"),
        ("services/${x}{service}.tf", "is not a safe relative path"),
        ("'services/{service} x.tf'", "is not a safe relative path"),
        ("services\\{service}.tf", "is not a safe relative path"),
    ],
)
def test_bad_infra_path(path: str, message: str) -> None:
    problem = one(edit("path: services/{service}.tf", f"path: {path}"))
    at(problem, "infra.path", 3, 9)
    written = path[1:-1] if path.startswith("'") else path
    assert problem.message == f"{written!r} {message}"
    assert "services/{service}.tf" in problem.hint


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_merge_methods(method: str) -> None:
    assert parse_config(edit("merge_method: squash", f"merge_method: {method}")).infra.merge_method == method


@pytest.mark.parametrize("method", ["fast-forward", "Squash", "'squash '"])
def test_bad_merge_method(method: str) -> None:
    problem = one(edit("merge_method: squash", f"merge_method: {method}"))
    at(problem, "infra.merge_method", 4, 17)
    assert problem.message == f"{method.strip(chr(39))!r} is not allowed"
    assert problem.hint == "use one of 'merge', 'squash' or 'rebase'"


def test_two_environments_sharing_a_branch() -> None:
    problem = one(edit("branch: main", "branch: develop"))
    at(problem, "environments.prod.branch", 14, 13)
    assert problem.message == "branch 'develop' is used by both staging and prod"
    assert problem.hint == "give each environment its own branch"


@pytest.mark.parametrize("branch", ["feature/x", "release-1.2", "v1.0", "a_b"])
def test_valid_branches(branch: str) -> None:
    assert parse_config(edit("branch: main", f"branch: {branch}")).environment_for_branch(branch) == "prod"


@pytest.mark.parametrize(
    "branch", ["'a b'", "a..b", "/main", "main/", "a//b", "'a@{1}'", "a~1", "a^", "main.", "'a:b'"]
)
def test_bad_branches(branch: str) -> None:
    problem = one(edit("branch: main", f"branch: {branch}"))
    at(problem, "environments.prod.branch", 14, 13)
    assert problem.message == f"{branch.strip(chr(39))!r} is not a valid branch name"
    assert problem.hint == "e.g. develop or main"


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("repository: acme/infra", 'repository: "acme/infra\\n"', "infra.repository"),
        ("region: us-east-1", 'region: "us-east-1\\n"', "environments.staging.region"),
        ('"111111111111"', '"111111111111\\n"', "environments.staging.account_id"),
        ("branch: main", 'branch: "main\\n"', "environments.prod.branch"),
        ("domain: lemon", 'domain: "lemon\\n"', "domain"),
        (
            "cluster: lemon-ecs-cluster\n    role",
            'cluster: "lemon-ecs-cluster\\n"\n    role',
            "environments.staging.cluster",
        ),
    ],
)
def test_a_trailing_newline_does_not_slip_through(old: str, new: str, path: str) -> None:
    # Python's `$` matches before a final newline: every check must match the whole value
    problem = one(edit(old, new))
    assert problem.path == path
    assert "\\n'" in problem.message


@pytest.mark.parametrize(
    "branch",
    [
        ".hidden",
        "feature/.x",
        "main.lock",
        "feature/x.lock",
        "x.lock/y",
        "-x",
        pytest.param(
            "HEAD",
        ),
    ],
)
def test_branches_git_refuses_are_refused(branch: str) -> None:
    # `git check-ref-format --branch` refuses each of these
    problem = one(edit("branch: main", f"branch: '{branch}'"))
    at(problem, "environments.prod.branch", 14, 13)
    assert problem.message == f"{branch!r} is not a valid branch name"
    assert problem.hint == "e.g. develop or main"


@pytest.mark.parametrize("branch", ["a.lockx", "feature/-x", "lock", "refs-x", "head"])
def test_branches_near_git_rules_are_still_fine(branch: str) -> None:
    assert parse_config(edit("branch: main", f"branch: {branch}")).environment_for_branch(branch) == "prod"


@pytest.mark.parametrize("name", ["prod", "qa", "dev2", "p", "production"])
def test_valid_environment_names(name: str) -> None:
    assert name in parse_config(edit("  prod:", f"  {name}:")).environments


@pytest.mark.parametrize("name", ["Prod", "pro-d", "pro_d", "1prod", "production1"])
def test_bad_environment_names(name: str) -> None:
    problem = one(edit("  prod:", f"  {name}:"))
    at(problem, f"environments.{name}", 13, 3)  # points at the key
    assert problem.message == f"{name!r} is not a valid environment name"
    assert problem.hint == "use 1-10 lowercase letters and digits, e.g. staging"


def test_an_environment_name_yaml_reads_as_a_boolean() -> None:
    problem = one(edit("  prod:", "  on:"))
    assert (problem.path, problem.line, problem.column) == ("environments.on", 13, 3)
    assert problem.hint == 'quote it: "on"'


def test_environments_may_not_be_empty() -> None:
    text = EXAMPLE.split("environments:")[0] + "environments: {}\n"
    problem = one(text)
    at(problem, "environments", 6, 15)
    assert problem.message == "this needs at least one entry"
    assert problem.hint == "add one; see the README for an example"


@pytest.mark.parametrize(
    ("old", "new", "path", "line", "column", "needle"),
    [
        (
            "role_arn: arn:aws:iam::111111111111:role/lemi-deployer",
            "role_arn: lemi-deployer",
            "environments.staging.role_arn",
            12,
            15,
            "is not a valid IAM role ARN",
        ),
        (
            "cluster: lemon-ecs-cluster\n    role",
            "cluster: 'lemon ecs'\n    role",
            "environments.staging.cluster",
            11,
            14,
            "is not a valid ECS cluster name",
        ),
        ("domain: lemon", "domain: Lemon.Example", "domain", 5, 9, "is not a valid domain"),
        ("domain: lemon", "domain: '${x}'", "domain", 5, 9, "is not a valid domain"),
        (
            "    protected: true\n",
            "    protected: true\n    image_wait_seconds: 3601\n",
            "environments.prod.image_wait_seconds",
            19,
            25,
            "3601 is out of range (of at most 3600)",
        ),
    ],
)
def test_other_bad_values(old: str, new: str, path: str, line: int, column: int, needle: str) -> None:
    problem = one(edit(old, new))
    at(problem, path, line, column)
    assert needle in problem.message


@pytest.mark.parametrize(("seconds", "bound"), [(3601, "of at most 3600"), (-1, "of at least 0")])
def test_image_wait_seconds_out_of_range(seconds: int, bound: str) -> None:
    problem = one(edit("    protected: true\n", f"    protected: true\n    image_wait_seconds: {seconds}\n"))
    at(problem, "environments.prod.image_wait_seconds", 19, 25)
    assert problem.message == f"{seconds} is out of range ({bound})"
    assert problem.hint == f"use a number {bound}"


@pytest.mark.parametrize("seconds", [0, 3600])
def test_image_wait_seconds_at_its_bounds(seconds: int) -> None:
    config = parse_config(edit("    protected: true\n", f"    protected: true\n    image_wait_seconds: {seconds}\n"))
    assert config.environment("prod").image_wait_seconds == seconds


@pytest.mark.parametrize(
    ("written", "message", "hint"),
    [
        ("yes", "expected a whole number, but 'yes' is read by YAML as a boolean", "write a whole number, e.g. 1"),
        ("ten", "expected a whole number, but got the text 'ten'", "write a number, e.g. 1"),
        ("'600'", "expected a whole number, but '600' is a string", "write it without quotes: 600"),
    ],
)
def test_image_wait_seconds_must_be_a_whole_number(written: str, message: str, hint: str) -> None:
    problem = one(edit("    protected: true\n", f"    protected: true\n    image_wait_seconds: {written}\n"))
    at(problem, "environments.prod.image_wait_seconds", 19, 25)
    assert problem.message == message
    assert problem.hint == hint


@pytest.mark.parametrize(("written", "kind"), [("1", "number"), ("2022-01-01", "date")])
def test_protected_yaml_reads_as_another_type(written: str, kind: str) -> None:
    problem = one(edit("protected: true", f"protected: {written}"))
    at(problem, "environments.prod.protected", 18, 16)
    assert problem.message == f"expected true or false, but {written!r} is read by YAML as a {kind}"
    assert problem.hint == "write true or false"


def test_merge_method_yaml_reads_as_a_boolean() -> None:
    problem = one(edit("merge_method: squash", "merge_method: yes"))
    at(problem, "infra.merge_method", 4, 17)
    assert "'yes' is read by YAML as a boolean" in problem.message
    assert "True" not in problem.message


@pytest.mark.parametrize(
    ("datadog", "path", "needle"),
    [
        ("site: 'datadog hq'", "datadog.site", "is not a valid Datadog site"),
        ("api_key_secret: 'a b'", "datadog.api_key_secret", "is not a valid secret name"),
        ("agent_image: 'Agent:7'", "datadog.agent_image", "is not a valid image reference"),
    ],
)
def test_bad_datadog_settings(datadog: str, path: str, needle: str) -> None:
    problem = one(EXAMPLE + f"datadog:\n  {datadog}\n")
    at(problem, path, 20, len("  " + datadog.split(": ")[0] + ": ") + 1)
    assert needle in problem.message
    assert problem.hint


# --- loading from disk --------------------------------------------------------------------


def test_load_config_with_a_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "lemi.yml"
    with pytest.raises(Invalid) as info:
        load_config(str(path))
    [problem] = info.value.problems
    assert problem.file == str(path)
    assert "not found" in problem.message
    assert "LEMI_CONFIG" in problem.hint and "--config" in problem.hint


def test_load_config_defaults_to_lemi_yml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Invalid) as info:
        load_config()
    assert info.value.problems[0].file == "lemi.yml"
    (tmp_path / "lemi.yml").write_text(EXAMPLE)
    assert load_config().domain == "lemon"


def test_load_config_follows_lemi_config_and_an_explicit_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = tmp_path / "env.yml"
    from_env.write_text(EXAMPLE)
    explicit = tmp_path / "explicit.yml"
    explicit.write_text(edit("domain: lemon", "domain: example.com"))
    monkeypatch.setenv("LEMI_CONFIG", str(from_env))
    assert load_config().domain == "lemon"
    assert load_config(str(explicit)).domain == "example.com"


def test_load_config_reports_problems_in_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "lemi.yml"
    path.write_text(edit('"111111111111"', "111111111111"))
    with pytest.raises(Invalid) as info:
        load_config(str(path))
    [problem] = info.value.problems
    at(problem, "environments.staging.account_id", 10, 17, file=str(path))
    assert problem.render().startswith(f"{path}:10:17: environments.staging.account_id: expected a string")


def test_load_config_on_a_directory(tmp_path: Path) -> None:
    with pytest.raises(Invalid) as info:
        load_config(str(tmp_path))
    [problem] = info.value.problems
    assert problem.file == str(tmp_path)
    assert "cannot read the file" in problem.message


# --- where application logs go ------------------------------------------------------------


def test_logs_default_to_datadog_and_may_go_to_cloudwatch() -> None:
    config = parse_config(edit("    protected: true\n", "    protected: true\n    logs: cloudwatch\n"))
    assert config.environment("staging").logs == "datadog"
    assert config.environment("prod").logs == "cloudwatch"


@pytest.mark.parametrize("written", ["CloudWatch", "splunk", "true", "''"])
def test_logs_has_two_destinations(written: str) -> None:
    problem = one(edit("    protected: true\n", f"    protected: true\n    logs: {written}\n"))
    at(problem, "environments.prod.logs", 19, 11)
    assert "datadog" in problem.hint and "cloudwatch" in problem.hint, problem
