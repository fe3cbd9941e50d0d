"""service.yaml and environment/<env>.yaml: what a user sees when a file is wrong.

Every refusal is checked for the file, line, column, field path, message and hint
that the CLI prints and the App turns into an annotation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.core.problems import Invalid, Problem
from bot.core.spec import EMPTY_ENVIRONMENT, parse_environment, parse_service, parse_service_files

REPO = "acme/demo-service"
SERVICE = "deploy/demo-service/service.yaml"
ENV = "deploy/demo-service/environment/staging.yaml"


def service_yaml(
    name: str = "demo-service",
    owner: str = "team-a",
    desired: str = "2",
    image: str = "demo-service",
    cpu: str = "512",
    memory: str = "1024",
) -> str:
    # positions of the values: name 1:7, owner 2:8, desiredCount 4:17, image 5:10, cpu 7:10, memory 8:13
    return (
        f"name: {name}\n"
        f"owner: {owner}\n"
        "spec:\n"
        f"  desiredCount: {desired}\n"
        f"  image: {image}\n"
        "  resource:\n"
        f"    cpu: {cpu}\n"
        f"    memory: {memory}\n"
    )


def problems(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Problem]:
    with pytest.raises(Invalid) as info:
        call(*args, **kwargs)
    assert info.value.problems
    return info.value.problems


def one(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Problem:
    found = problems(call, *args, **kwargs)
    assert len(found) == 1, found
    return found[0]


def service_problem(text: str, **kwargs: Any) -> Problem:
    kwargs.setdefault("repository", REPO)
    return one(parse_service, text, SERVICE, **kwargs)


def env_problem(text: str) -> Problem:
    return one(parse_environment, text, ENV)


def at(problem: Problem, file: str, path: str, line: int, column: int) -> None:
    assert (problem.file, problem.path, problem.line, problem.column) == (file, path, line, column), problem


# --- a good file ------------------------------------------------------------------------


def test_a_valid_service_file() -> None:
    service = parse_service(service_yaml(), SERVICE, repository=REPO, directory="demo-service")
    assert service.name == "demo-service"
    assert service.owner == "team-a"
    assert service.spec.desired_count == 2
    assert (service.spec.resource.cpu, service.spec.resource.memory) == (512, 1024)


def test_image_defaults_to_the_service_name_and_desired_count_to_one() -> None:
    text = "name: demo-service-worker\nowner: team-a\nspec:\n  resource:\n    cpu: 256\n    memory: 512\n"
    service = parse_service(text, SERVICE, repository=REPO)
    assert service.spec.image is None
    assert service.image == "demo-service-worker"
    assert service.spec.desired_count == 1
    assert parse_service(service_yaml(image="acme/other"), SERVICE, repository=REPO).image == "acme/other"


# --- unknown keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "line", "column", "hint"),
    [
        (
            service_yaml().replace("desiredCount", "desiredCont"),
            "spec.desiredCont",
            4,
            3,
            "did you mean `desiredCount`?",
        ),
        (service_yaml().replace("image", "imag"), "spec.imag", 5, 3, "did you mean `image`?"),
        (service_yaml().replace("memory", "memroy"), "spec.resource.memroy", 8, 5, "did you mean `memory`?"),
        (service_yaml() + "ownr: x\n", "ownr", 9, 1, "did you mean `owner`?"),
        (
            service_yaml().replace("  image: demo-service\n", "  zzz: 1\n"),
            "spec.zzz",
            5,
            3,
            "allowed here: desiredCount, image, resource, tasks, preDeploy, schedules",
        ),
    ],
)
def test_unknown_key_in_service_file(text: str, path: str, line: int, column: int, hint: str) -> None:
    found = problems(parse_service, text, SERVICE, repository=REPO)
    unknown = [p for p in found if p.message.startswith("unknown field")]
    assert len(unknown) == 1, found
    problem = unknown[0]
    at(problem, SERVICE, path, line, column)
    assert problem.message == f"unknown field {path.rsplit('.', 1)[-1]!r}"
    assert problem.hint == hint


def test_misspelt_resources_reports_the_unknown_key_and_the_missing_one_in_file_order() -> None:
    found = problems(parse_service, service_yaml().replace("resource:", "resources:"), SERVICE, repository=REPO)
    assert [(p.path, p.line, p.message, p.hint) for p in found] == [
        ("spec", 4, "missing required field 'resource'", "add `resource:` here"),
        ("spec.resources", 6, "unknown field 'resources'", "did you mean `resource`?"),
    ]
    assert found[1].render() == (
        f"{SERVICE}:6:3: spec.resources: unknown field 'resources'\n    hint: did you mean `resource`?"
    )


@pytest.mark.parametrize(
    ("text", "path", "hint"),
    [
        ("varaibles:\n  A: x\n", "varaibles", "did you mean `variables`?"),
        ("secret:\n  A: x\n", "secret", "did you mean `secrets`?"),
        ("parameter:\n  A: /x\n", "parameter", "did you mean `parameters`?"),
        ("desiredcount: 2\n", "desiredcount", "did you mean `desiredCount`?"),
        ("resources:\n  cpu: 256\n  memory: 512\n", "resources", "did you mean `resource`?"),
    ],
)
def test_unknown_key_in_environment_file(text: str, path: str, hint: str) -> None:
    problem = env_problem(text)
    at(problem, ENV, path, 1, 1)
    assert problem.message == f"unknown field {path!r}"
    assert problem.hint == hint


# --- missing fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "path", "line", "column"),
    [
        (service_yaml().replace("name: demo-service\n", ""), "name", "", 1, 1),
        (service_yaml().replace("owner: team-a\n", ""), "owner", "", 1, 1),
        ("name: demo-service\nowner: team-a\n", "spec", "", 1, 1),
        ("name: demo-service\nowner: team-a\nspec:\n  desiredCount: 2\n", "resource", "spec", 4, 3),
        (service_yaml().replace("    memory: 1024\n", ""), "memory", "spec.resource", 7, 5),
        (service_yaml().replace("    cpu: 512\n", ""), "cpu", "spec.resource", 7, 5),
    ],
)
def test_missing_required_field_points_at_its_parent(text: str, field: str, path: str, line: int, column: int) -> None:
    problem = service_problem(text)
    at(problem, SERVICE, path, line, column)
    assert problem.message == f"missing required field {field!r}"
    assert problem.hint == f"add `{field}:` here"


def test_an_empty_map_reports_every_missing_field() -> None:
    found = problems(parse_service, "{}\n", SERVICE, repository=REPO)
    assert sorted(p.message for p in found) == [
        "missing required field 'name'",
        "missing required field 'owner'",
        "missing required field 'spec'",
    ]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", b""])
def test_an_empty_service_file_says_what_it_must_hold(text: str | bytes) -> None:
    problem = service_problem(text)  # type: ignore[arg-type]
    at(problem, SERVICE, "", 1, 1)
    assert problem.message == "the file is empty"
    assert problem.hint == "it must hold name, owner and spec"


def test_a_list_instead_of_a_map() -> None:
    problem = service_problem("- name: demo-service\n")
    assert "expected a map of `key: value` lines, got a list" in problem.message
    problem = env_problem("variables:\n  - LOG_LEVEL=info\n")
    at(problem, ENV, "variables", 2, 3)
    assert "expected a map of `key: value` lines, got a list" in problem.message


# --- YAML reading words as booleans, numbers and dates --------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("owner", "no", "boolean"),
        ("owner", "on", "boolean"),
        ("owner", "yes", "boolean"),
        ("owner", "off", "boolean"),
        ("owner", "Off", "boolean"),
        ("owner", "YES", "boolean"),
        ("owner", "1.10", "number"),
        ("owner", "42", "number"),
        ("owner", "2022-01-01", "date"),
        ("name", "no", "boolean"),
        ("image", "on", "boolean"),
        ("image", "1.10", "number"),
    ],
)
def test_a_word_yaml_reads_as_another_type_gets_a_quote_hint(field: str, value: str, kind: str) -> None:
    problem = service_problem(service_yaml(**{field: value}))
    path, line, column = {"name": ("name", 1, 7), "owner": ("owner", 2, 8), "image": ("spec.image", 5, 10)}[field]
    at(problem, SERVICE, path, line, column)
    # the text as written, not as YAML converted it (1.10, not 1.1)
    assert problem.message == f"expected a string, but {value!r} is read by YAML as a {kind}"
    assert problem.hint == f'quote it: "{value}"'


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("no", "boolean"),
        ("on", "boolean"),
        ("yes", "boolean"),
        ("1.10", "number"),
        ("2022-01-01", "date"),
        ("8080", "number"),
    ],
)
def test_environment_variable_values_must_be_strings(value: str, kind: str) -> None:
    problem = env_problem(f"variables:\n  LOG_LEVEL: info\n  FLAG: {value}\n")
    at(problem, ENV, "variables.FLAG", 3, 9)
    assert problem.message == f"expected a string, but {value!r} is read by YAML as a {kind}"
    assert problem.hint == f'quote it: "{value}"'
    assert problem.render() == (
        f"{ENV}:3:9: variables.FLAG: expected a string, but {value!r} is read by YAML as a {kind}\n"
        f'    hint: quote it: "{value}"'
    )


def test_quoted_words_are_strings() -> None:
    env = parse_environment("variables:\n  A: 'no'\n  B: \"1.10\"\n  C: '2022-01-01'\n", ENV)
    assert env.variables == {"A": "no", "B": "1.10", "C": "2022-01-01"}


def test_an_empty_value_where_a_string_is_meant() -> None:
    problem = env_problem("variables:\n  FLAG:\n")
    at(problem, ENV, "variables.FLAG", 2, 8)
    assert problem.message == "expected a string, but the value is empty"
    assert problem.hint == 'write a value, or "" for empty'
    assert parse_environment('variables:\n  FLAG: ""\n', ENV).variables == {"FLAG": ""}


@pytest.mark.parametrize(
    ("field", "value", "path", "line", "column"),
    [
        ("cpu", '"512"', "spec.resource.cpu", 7, 10),
        ("memory", "'1024'", "spec.resource.memory", 8, 13),
        ("desired", "'2'", "spec.desiredCount", 4, 17),
    ],
)
def test_a_quoted_number_gets_a_hint_without_quotes(field: str, value: str, path: str, line: int, column: int) -> None:
    problem = service_problem(service_yaml(**{field: value}))
    at(problem, SERVICE, path, line, column)
    bare = value.strip("'\"")
    assert problem.message == f"expected a whole number, but {bare!r} is a string"
    assert problem.hint == f"write it without quotes: {bare}"


@pytest.mark.parametrize(
    "value",
    [
        "many",
        "two",
        "'lots'",
        "0x1g",
        "nan",
        "inf",
        "1e3",
    ],
)
def test_a_word_where_a_number_is_meant_does_not_suggest_dropping_quotes(value: str) -> None:
    problem = service_problem(service_yaml(desired=value))
    at(problem, SERVICE, "spec.desiredCount", 4, 17)
    assert problem.message == f"expected a whole number, but got the text {value.strip(chr(39))!r}"
    assert problem.hint == "write a number, e.g. 1"


@pytest.mark.parametrize(
    ("field", "value", "kind", "path", "line", "column"),
    [
        ("desired", "yes", "boolean", "spec.desiredCount", 4, 17),
        ("desired", "2022-01-01", "date", "spec.desiredCount", 4, 17),
        ("desired", "1.5", "number", "spec.desiredCount", 4, 17),
        ("cpu", "on", "boolean", "spec.resource.cpu", 7, 10),
        ("memory", "512.0", "number", "spec.resource.memory", 8, 13),
    ],
)
def test_a_yaml_boolean_number_or_date_where_a_whole_number_is_meant(
    field: str, value: str, kind: str, path: str, line: int, column: int
) -> None:
    problem = service_problem(service_yaml(**{field: value}))
    at(problem, SERVICE, path, line, column)
    assert problem.message == f"expected a whole number, but {value!r} is read by YAML as a {kind}"
    assert problem.hint == "write a whole number, e.g. 1"


@pytest.mark.parametrize(
    ("text", "path", "column", "value"),
    [("resource: yes\n", "resource", 11, "yes"), ("variables: no\n", "variables", 12, "no")],
)
def test_a_yaml_boolean_where_a_map_is_meant(text: str, path: str, column: int, value: str) -> None:
    problem = env_problem(text)
    at(problem, ENV, path, 1, column)
    assert problem.message == f"expected a map of `key: value` lines, but {value!r} is read by YAML as a boolean"
    assert problem.hint == "write a map of `key: value` lines"


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "repository"),
    [
        ("demo-service", REPO),
        ("demo-service-worker", REPO),
        ("demo-service-a1", REPO),
        ("demo-service-" + "a" * 19, REPO),  # 32 characters
        ("demo-service", "demo-service"),  # repository without its owner
        ("demo-service", "acme/Demo-Service"),  # GitHub names are case-insensitive
        ("anything-valid", None),  # no repository known: only the name rules apply
    ],
)
def test_valid_service_names(name: str, repository: str | None) -> None:
    assert parse_service(service_yaml(name=name), SERVICE, repository=repository).name == name


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("Demo-Service", "Demo-Service"),
        ("demo_service", "demo_service"),
        ("demo-service-", "demo-service-"),
        ("demo-service--x", "demo-service--x"),
        ("demo-service-" + "a" * 20, "demo-service-" + "a" * 20),  # 33 characters
        ("'demo-service x'", "demo-service x"),
        ('"demo-service-\\"x"', 'demo-service-"x'),
        ("demo-service-${x}", "demo-service-${x}"),
        ("'demo-service-$(id)'", "demo-service-$(id)"),
        ("1demo-service", "1demo-service"),
    ],
)
def test_unsafe_or_malformed_service_names_are_refused(written: str, name: str) -> None:
    problem = service_problem(service_yaml(name=written))
    at(problem, SERVICE, "name", 1, 7)
    assert problem.message.startswith(f"{name!r} is not a valid service name")
    assert "lowercase letters, digits and single hyphens" in problem.message
    assert "at most 32 characters" in problem.message
    assert problem.hint == "rename it in this file"


@pytest.mark.parametrize("name", ["demo", "demo-servicex", "service-demo", "demo-services", "other-service"])
def test_service_must_be_named_after_its_repository(name: str) -> None:
    problem = service_problem(service_yaml(name=name))
    at(problem, SERVICE, "name", 1, 7)
    assert problem.message == (
        "the service must be named after its repository: 'demo-service' or 'demo-service-<suffix>'"
    )
    assert problem.hint == "rename it in this file"


def test_without_a_repository_an_invalid_name_gets_an_example() -> None:
    problem = service_problem(service_yaml(name="Demo"), repository=None)
    assert "is not a valid service name" in problem.message
    assert problem.hint == "use e.g. demo-service"


def test_name_must_match_its_directory() -> None:
    problem = service_problem(service_yaml(name="demo-service-worker"), directory="demo-service")
    at(problem, SERVICE, "name", 1, 7)
    assert problem.message == "the name 'demo-service-worker' does not match its directory deploy/demo-service/"
    assert problem.hint == "name the directory deploy/demo-service-worker/ or set name: demo-service"
    ok = parse_service(
        service_yaml(name="demo-service-worker"), SERVICE, repository=REPO, directory="demo-service-worker"
    )
    assert ok.name == "demo-service-worker"


@pytest.mark.parametrize("owner", ["team-a", "team_a", "a", "platform-team-1", "a" * 64])
def test_valid_owners(owner: str) -> None:
    assert parse_service(service_yaml(owner=owner), SERVICE, repository=REPO).owner == owner


@pytest.mark.parametrize(
    ("written", "owner"),
    [
        ("Team-A", "Team-A"),
        ("-team", "-team"),
        ("team-", "team-"),
        ("team.a", "team.a"),
        ("a" * 65, "a" * 65),
        ("'team a'", "team a"),
        ('"te\\"am"', 'te"am'),
        ("team-${x}", "team-${x}"),
    ],
)
def test_invalid_owners_are_refused(written: str, owner: str) -> None:
    problem = service_problem(service_yaml(owner=written))
    at(problem, SERVICE, "owner", 2, 8)
    assert problem.message == f"{owner!r} is not a valid owner"
    assert "team slug" in problem.hint and "64 characters" in problem.hint


@pytest.mark.parametrize("image", ["demo-service", "acme/demo", "ab", "a.b_c-d/e", "team/sub/demo-1.2"])
def test_valid_ecr_repository_names(image: str) -> None:
    assert parse_service(service_yaml(image=image), SERVICE, repository=REPO).image == image


@pytest.mark.parametrize(
    "image",
    [
        "Demo",
        "a",
        "demo//x",
        "/demo",
        "demo/",
        "demo-",
        "demo..x",
        "demo:latest",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo:1",
        "a" * 257,
    ],
)
def test_invalid_ecr_repository_names_are_refused(image: str) -> None:
    problem = service_problem(service_yaml(image=f"'{image}'"))
    at(problem, SERVICE, "spec.image", 5, 10)
    assert problem.message == f"{image!r} is not a valid ECR repository name"
    assert "2 to 256 characters" in problem.hint and "demo-service" in problem.hint


@pytest.mark.parametrize(
    ("field", "path", "line", "column"),
    [("name", "name", 1, 7), ("owner", "owner", 2, 8), ("image", "spec.image", 5, 10)],
)
def test_a_trailing_newline_does_not_slip_through(field: str, path: str, line: int, column: int) -> None:
    # Python's `$` matches before a final newline: every name check must match the whole text
    value = {"name": "demo-service", "owner": "team-a", "image": "demo-service"}[field]
    problem = service_problem(service_yaml(**{field: f'"{value}\\n"'}))
    at(problem, SERVICE, path, line, column)
    assert problem.message.startswith(repr(value + "\n"))


# --- environment variables ----------------------------------------------------------------


@pytest.mark.parametrize("section", ["variables", "secrets", "parameters"])
@pytest.mark.parametrize("name", ["LOG_LEVEL", "_PRIVATE", "a1", "dd_env"])
def test_valid_environment_variable_names(section: str, name: str) -> None:
    value = {"variables": "x", "secrets": "db", "parameters": "/x"}[section]
    env = parse_environment(f"{section}:\n  {name}: {value}\n", ENV)
    assert getattr(env, section) == {name: value}


@pytest.mark.parametrize("section", ["variables", "secrets", "parameters"])
@pytest.mark.parametrize(
    ("written", "name"), [("1A", "1A"), ("A-B", "A-B"), ("'A B'", "A B"), ("A.B", "A.B"), ("'É'", "É")]
)
def test_invalid_environment_variable_names(section: str, written: str, name: str) -> None:
    problem = env_problem(f"{section}:\n  OK: x\n  {written}: y\n")
    at(problem, ENV, f"{section}.{name}", 3, 3)  # points at the key
    assert problem.message == f"{name!r} is not a valid environment variable name"
    assert "letters, digits and underscores" in problem.hint


@pytest.mark.parametrize("section", ["variables", "secrets", "parameters"])
@pytest.mark.parametrize(
    "name",
    ["DD_SERVICE", "DD_ENV", "DD_VERSION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "ECS_CONTAINER_METADATA_URI_V4"],
)
def test_reserved_environment_variable_names(section: str, name: str) -> None:
    value = {"variables": "x", "secrets": "db", "parameters": "/x"}[section]
    problem = env_problem(f"{section}:\n  {name}: {value}\n")
    at(problem, ENV, f"{section}.{name}", 2, 3)
    assert problem.message == f"{name!r} is set by lemi or ECS and cannot be overridden"
    assert problem.hint == "choose another name"


@pytest.mark.parametrize(
    ("first", "second"),
    [("variables", "secrets"), ("variables", "parameters"), ("secrets", "parameters")],
)
def test_one_variable_from_two_sections_is_refused_naming_both(first: str, second: str) -> None:
    value = {"variables": "x", "secrets": "db", "parameters": "/x"}
    text = f"{first}:\n  DB_URL: {value[first]}\n{second}:\n  DB_URL: {value[second]}\n"
    problem = env_problem(text)
    at(problem, ENV, f"{second}.DB_URL", 4, 11)
    assert problem.message == f"DB_URL is defined in both {first} and {second}"
    assert "one place only" in problem.hint


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('variables:\n  "LOG_LEVEL\\n": x\n', "variables.LOG_LEVEL\n"),
        ('secrets:\n  DB: "db\\n"\n', "secrets.DB"),
        ('parameters:\n  P: "/x\\n"\n', "parameters.P"),
        ('secrets:\n  DB: "arn:aws:secretsmanager:us-east-1:111111111111:secret:db\\n"\n', "secrets.DB"),
        ('parameters:\n  P: "arn:aws:ssm:us-east-1:111111111111:parameter/x\\n"\n', "parameters.P"),
    ],
)
def test_a_trailing_newline_in_a_name_or_reference_is_refused(text: str, path: str) -> None:
    problem = env_problem(text)
    assert (problem.file, problem.path, problem.line) == (ENV, path, 2)
    assert "\\n'" in problem.message


def test_nul_in_a_value_is_refused() -> None:
    problem = env_problem('variables:\n  OK: x\n  BAD: "a\\0b"\n')
    at(problem, ENV, "variables.BAD", 3, 8)
    assert problem.message == "the value contains a NUL character"
    assert problem.hint == "remove it"


# --- secret and parameter references -------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "secret", "json_key", "stage", "version"),
    [
        ("db-password", "db-password", "", "", ""),
        ("demo-service/db", "demo-service/db", "", "", ""),
        ("'db:password::'", "db", "password", "", ""),
        ("'db::AWSPREVIOUS:'", "db", "", "AWSPREVIOUS", ""),
        ("'db:::v1'", "db", "", "", "v1"),
        (
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:db-AbCdEf",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:db-AbCdEf",
            "",
            "",
            "",
        ),
        (
            "'arn:aws:secretsmanager:us-east-1:111111111111:secret:db-AbCdEf:password::'",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:db-AbCdEf",
            "password",
            "",
            "",
        ),
        (
            "arn:aws-cn:secretsmanager:cn-north-1:111111111111:secret:db",
            "arn:aws-cn:secretsmanager:cn-north-1:111111111111:secret:db",
            "",
            "",
            "",
        ),
    ],
)
def test_valid_secret_references(written: str, secret: str, json_key: str, stage: str, version: str) -> None:
    env = parse_environment(f"secrets:\n  DB: {written}\n", ENV)
    ref = env.secret_refs()["DB"]
    assert (ref.secret, ref.json_key, ref.version_stage, ref.version_id) == (secret, json_key, stage, version)


def test_secret_value_from_is_the_arn_ecs_wants() -> None:
    env = parse_environment("secrets:\n  A: db\n  B: 'db:password::'\n", ENV)
    refs = env.secret_refs()
    arn = "arn:aws:secretsmanager:us-east-1:111111111111:secret:db"
    assert refs["A"].value_from("us-east-1", "111111111111") == arn
    assert refs["B"].value_from("us-east-1", "111111111111") == arn + ":password::"
    assert refs["A"].value_from("cn-north-1", "111111111111").startswith("arn:aws-cn:secretsmanager:cn-north-1:")


@pytest.mark.parametrize(
    ("written", "text", "message", "hint"),
    [
        ("'db:password'", "db:password", "a JSON key reference needs three parts after the secret", "db:password::"),
        ("'db:a:b:c:d'", "db:a:b:c:d", "a JSON key reference needs three parts after the secret", "db:password::"),
        ("'db:::'", "db:::", "a JSON key reference needs three parts after the secret", "db:<json-key>"),
        ("'a b'", "a b", "is not a valid secret name", "/_+=.@-"),
        ("''", "", "is not a valid secret name", "512 characters"),
        (
            "arn:aws:secretsmanager:us-east-1:1111:secret:db",
            "arn:aws:secretsmanager:us-east-1:1111:secret:db",
            "is not a Secrets Manager secret ARN",
            "arn:aws:secretsmanager:<region>:<account>:secret:<name>",
        ),
        (
            "arn:aws:secretsmanager:us-east-1:111111111111:db",
            "arn:aws:secretsmanager:us-east-1:111111111111:db",
            "is not a Secrets Manager secret ARN",
            "just the secret's name",
        ),
        (
            "arn:aws:ssm:us-east-1:111111111111:parameter/db",
            "arn:aws:ssm:us-east-1:111111111111:parameter/db",
            "is not a Secrets Manager secret ARN",
            "arn:aws:secretsmanager:",
        ),
    ],
)
def test_invalid_secret_references(written: str, text: str, message: str, hint: str) -> None:
    problem = env_problem(f"secrets:\n  DB: {written}\n")
    at(problem, ENV, "secrets.DB", 2, 7)
    assert problem.message.startswith(repr(text))
    assert message in problem.message
    assert hint in problem.hint


@pytest.mark.parametrize(
    ("written", "value_from"),
    [
        ("/demo-service/feature-x", "arn:aws:ssm:us-east-1:111111111111:parameter/demo-service/feature-x"),
        ("feature.x", "arn:aws:ssm:us-east-1:111111111111:parameter/feature.x"),
        ("/a/b_c-d.e", "arn:aws:ssm:us-east-1:111111111111:parameter/a/b_c-d.e"),
        (
            "arn:aws:ssm:eu-west-1:222222222222:parameter/shared/x",
            "arn:aws:ssm:eu-west-1:222222222222:parameter/shared/x",
        ),
        (
            "arn:aws:ssm:us-east-1:111111111111:parameter/x",
            "arn:aws:ssm:us-east-1:111111111111:parameter/x",
        ),
        # '.' is allowed in SSM names, so '..' is a literal name segment (an ARN is not a file path)
        ("/demo/../x", "arn:aws:ssm:us-east-1:111111111111:parameter/demo/../x"),
    ],
)
def test_valid_parameter_references(written: str, value_from: str) -> None:
    env = parse_environment(f"parameters:\n  P: {written}\n", ENV)
    assert env.parameters == {"P": written}
    assert env.parameter_refs()["P"].value_from("us-east-1", "111111111111") == value_from


@pytest.mark.parametrize(
    ("written", "text", "message"),
    [
        ("'a b'", "a b", "is not a valid parameter name"),
        ("'/a b/c'", "/a b/c", "is not a valid parameter name"),
        ("/a//b", "/a//b", "is not a valid parameter name"),
        ("a/", "a/", "is not a valid parameter name"),
        ("a/b", "a/b", "is not a valid parameter name"),
        ("''", "", "is not a valid parameter name"),
        ("/a$b", "/a$b", "is not a valid parameter name"),
        (
            "arn:aws:ssm:us-east-1:111111111111:parameter",
            "arn:aws:ssm:us-east-1:111111111111:parameter",
            "is not an SSM parameter ARN",
        ),
        (
            "'arn:aws:ssm:us-east-1:111111111111:parameter/a b'",
            "arn:aws:ssm:us-east-1:111111111111:parameter/a b",
            "is not an SSM parameter ARN",
        ),
        (
            "arn:aws:ssm:us-east-1:1111:parameter/x",
            "arn:aws:ssm:us-east-1:1111:parameter/x",
            "is not an SSM parameter ARN",
        ),
        (
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:x",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:x",
            "is not an SSM parameter ARN",
        ),
    ],
)
def test_invalid_parameter_references(written: str, text: str, message: str) -> None:
    problem = env_problem(f"parameters:\n  P: {written}\n")
    at(problem, ENV, "parameters.P", 2, 6)
    assert problem.message == f"{text!r} {message}"
    assert ("/demo-service/feature-x" if "name" in message else "arn:aws:ssm:<region>") in problem.hint


def test_a_hierarchical_parameter_name_needs_its_leading_slash() -> None:
    # SSM requires the leading "/" once a name has a path; without it the ARN lemi builds
    # would silently point at /demo-service/feature-x while verification looks up another name
    problem = env_problem("parameters:\n  P: demo-service/feature-x\n")
    at(problem, ENV, "parameters.P", 2, 6)
    assert problem.message == "'demo-service/feature-x' is not a valid parameter name"
    assert "/demo-service/feature-x" in problem.hint


# --- desiredCount --------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 5000])
def test_desired_count_within_bounds(count: int) -> None:
    assert parse_service(service_yaml(desired=str(count)), SERVICE, repository=REPO).spec.desired_count == count
    assert parse_environment(f"desiredCount: {count}\n", ENV).desired_count == count


@pytest.mark.parametrize(
    ("count", "bound"), [(5001, "of at most 5000"), (9000, "of at most 5000"), (-1, "of at least 0")]
)
def test_desired_count_out_of_bounds(count: int, bound: str) -> None:
    problem = service_problem(service_yaml(desired=str(count)))
    at(problem, SERVICE, "spec.desiredCount", 4, 17)
    assert problem.message == f"{count} is out of range ({bound})"
    assert problem.hint == f"use a number {bound}"
    problem = env_problem(f"desiredCount: {count}\n")
    at(problem, ENV, "desiredCount", 1, 15)
    assert problem.message == f"{count} is out of range ({bound})"
    assert problem.hint == f"use a number {bound}"


@pytest.mark.parametrize(
    ("call", "text", "path", "line", "column"),
    [
        (parse_service, service_yaml().replace("desiredCount", "desired_count"), "spec.desired_count", 4, 3),
        (parse_environment, "desired_count: 3\n", "desired_count", 1, 1),
        (parse_environment, "desiredCount: 3\ndesired_count: 3\n", "desired_count", 2, 1),
    ],
)
def test_snake_case_desired_count_is_an_unknown_field(
    call: Callable[..., Any], text: str, path: str, line: int, column: int
) -> None:
    file = SERVICE if call is parse_service else ENV
    problem = one(call, text, file)
    at(problem, file, path, line, column)
    assert problem.message == "unknown field 'desired_count'"
    assert problem.hint == "did you mean `desiredCount`?"


# --- environment files ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", b"", "# every section is optional\n", "{}\n", "---\n"])
def test_an_empty_environment_file_is_valid(text: str | bytes) -> None:
    env = parse_environment(text, ENV)
    assert env == EMPTY_ENVIRONMENT
    assert (env.variables, env.secrets, env.parameters, env.desired_count, env.resource) == ({}, {}, {}, None, None)


def test_a_full_environment_file() -> None:
    text = (
        "variables:\n  LOG_LEVEL: info\n"
        "secrets:\n  DB_PASSWORD: demo-service/db-password\n"
        "parameters:\n  FEATURE_X: /demo-service/feature-x\n"
        "desiredCount: 3\n"
        "resource: {cpu: 1024, memory: 2048}\n"
    )
    env = parse_environment(text.encode(), ENV)
    assert env.variables == {"LOG_LEVEL": "info"}
    assert env.secrets == {"DB_PASSWORD": "demo-service/db-password"}
    assert env.parameters == {"FEATURE_X": "/demo-service/feature-x"}
    assert env.desired_count == 3
    assert env.resource is not None and (env.resource.cpu, env.resource.memory) == (1024, 2048)


# --- a service directory as a whole -------------------------------------------------------

BASE = "deploy/demo-service"
KNOWN = ["staging", "prod"]


def test_service_files_are_collected() -> None:
    files = {
        "service.yaml": service_yaml(),
        "environment/staging.yaml": "variables:\n  LOG_LEVEL: debug\n",
        "environment/prod.yml": b"desiredCount: 4\n",
        "environment/README.md": "not a YAML file",
        "environment/old/prod.yaml": "{{ not: yaml",
        "Dockerfile": "FROM scratch",
    }
    result = parse_service_files("demo-service", files, repository=REPO, known_environments=KNOWN)
    assert result.service.name == "demo-service"
    assert set(result.environments) == {"staging", "prod"}
    assert result.environment("staging").variables == {"LOG_LEVEL": "debug"}
    assert result.environment("prod").desired_count == 4
    assert result.environment("qa") == EMPTY_ENVIRONMENT  # no file: nothing overridden


def test_problems_of_every_file_are_reported_at_once() -> None:
    files = {
        "service.yaml": service_yaml(owner="Team-A"),
        "environment/staging.yaml": "variables:\n  LOG_LEVEL: no\n",
        "environment/prod.yaml": "desiredCount: 9000\n",
    }
    found = problems(parse_service_files, "demo-service", files, repository=REPO, known_environments=KNOWN)
    assert [(p.file, p.path, p.line, p.column) for p in found] == [
        (f"{BASE}/service.yaml", "owner", 2, 8),
        (f"{BASE}/environment/prod.yaml", "desiredCount", 1, 15),
        (f"{BASE}/environment/staging.yaml", "variables.LOG_LEVEL", 2, 14),
    ]
    assert found[0].message == "'Team-A' is not a valid owner"
    assert found[1].message == "9000 is out of range (of at most 5000)"
    assert found[2].hint == 'quote it: "no"'


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ("stagin", "did you mean `staging`?"),
        ("Prod", "did you mean `prod`?"),
        ("qa", "environments in lemi.yml: staging, prod"),
    ],
)
def test_an_environment_file_lemi_yml_does_not_know(env: str, hint: str) -> None:
    files = {"service.yaml": service_yaml(), f"environment/{env}.yaml": "not: [valid"}
    problem = one(parse_service_files, "demo-service", files, repository=REPO, known_environments=KNOWN)
    # its content is not parsed: the name is the problem
    assert problem.file == f"{BASE}/environment/{env}.yaml"
    assert problem.message == f"there is no environment {env!r} in lemi.yml"
    assert problem.hint == hint


def test_any_environment_name_when_lemi_yml_is_not_known() -> None:
    files = {"service.yaml": service_yaml(), "environment/qa.yaml": ""}
    assert set(parse_service_files("demo-service", files, repository=REPO).environments) == {"qa"}


def test_yaml_and_yml_for_the_same_environment() -> None:
    files = {
        "service.yaml": service_yaml(),
        "environment/staging.yaml": "desiredCount: 2\n",
        "environment/staging.yml": "desiredCount: 3\n",
    }
    problem = one(parse_service_files, "demo-service", files, repository=REPO, known_environments=KNOWN)
    assert problem.file == f"{BASE}/environment/staging.yml"
    assert problem.message == TWO_FILES
    assert problem.hint == "keep one"


TWO_FILES = "environment 'staging' has two files (environment/staging.yaml and environment/staging.yml)"


@pytest.mark.parametrize(
    ("yaml_text", "yml_text"),
    [("desiredCount: 9000\n", "desiredCount: 3\n"), ("desiredCount: 3\n", "not: [valid\n")],
    ids=["yaml-invalid", "yml-invalid"],
)
def test_yaml_and_yml_are_reported_even_when_one_is_invalid(yaml_text: str, yml_text: str) -> None:
    files = {
        "service.yaml": service_yaml(),
        "environment/staging.yaml": yaml_text,
        "environment/staging.yml": yml_text,
    }
    found = problems(parse_service_files, "demo-service", files, repository=REPO, known_environments=KNOWN)
    two = [p for p in found if p.message == TWO_FILES]
    assert len(two) == 1, found
    assert two[0].file == f"{BASE}/environment/staging.yml"
    assert two[0].hint == "keep one"


def test_a_missing_service_file() -> None:
    files = {"environment/staging.yaml": ""}
    problem = one(parse_service_files, "demo-service", files, repository=REPO)
    assert problem.file == f"{BASE}/service.yaml"
    assert problem.message == "the file is missing"
    assert "lemi service new" in problem.hint


def test_directory_mismatch_through_the_directory_listing() -> None:
    files = {"service.yaml": service_yaml()}
    problem = one(parse_service_files, "other", files, repository=REPO)
    at(problem, "deploy/other/service.yaml", "name", 1, 7)
    assert "does not match its directory deploy/other/" in problem.message


# --- values YAML cannot build: positioned problems, never an exception ------------------------


SERVICE_POISON = [
    # (field, value as written, in the message, hint, path, line, column)
    pytest.param("owner", "2024-02-30", "'2024-02-30' is read by YAML as a date, but it is not a valid one",
                 'quote it: "2024-02-30"', "owner", 2, 8, id="impossible-date"),
    pytest.param("owner", "1" * 5_000, "is read by YAML as a number, longer than the 40 characters",
                 "quote it if it is text", "owner", 2, 8, id="5000-digit-owner"),
    pytest.param("desired", "1" * 5_000, "is read by YAML as a number, longer than the 40 characters",
                 "quote it if it is text", "spec.desiredCount", 4, 17, id="5000-digit-count"),
    pytest.param("desired", "1:30", "'1:30' is read by YAML as a base-60 (sexagesimal) number",
                 'quote it: "1:30"; YAML 1.1 reads it as a base-60 number', "spec.desiredCount", 4, 17, id="base60-count"),
    pytest.param("image", "190:20:30.15", "base-60",
                 'quote it: "190:20:30.15"; YAML 1.1 reads it as a base-60 number', "spec.image", 5, 10, id="base60-image"),
    pytest.param("cpu", "!!int foo", "'foo' is tagged !!int but is not a number",
                 "remove the tag; lemi files need no tags", "spec.resource.cpu", 7, 10, id="tagged-cpu"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value", "needle", "hint", "path", "line", "column"), SERVICE_POISON)
def test_a_value_yaml_cannot_build_is_a_problem_of_the_service_files(
    field: str, value: str, needle: str, hint: str, path: str, line: int, column: int
) -> None:
    files = {"service.yaml": service_yaml(**{field: value}), "environment/staging.yaml": "desiredCount: 2\n"}
    problem = one(parse_service_files, "demo-service", files, repository=REPO, known_environments=KNOWN)
    at(problem, SERVICE, path, line, column)
    assert needle in problem.message and problem.hint == hint
    assert len(problem.render()) < 300  # a 5,000-digit value is not echoed back


def test_values_yaml_cannot_build_in_several_files_are_all_reported() -> None:
    files = {
        "service.yaml": service_yaml(owner="2024-02-30"),
        "environment/staging.yaml": "variables:\n  LOG_LEVEL: info\n  SINCE: 2023-02-29\n",
        "environment/prod.yaml": "desiredCount: 1:00\n",
    }
    found = problems(parse_service_files, "demo-service", files, repository=REPO, known_environments=KNOWN)
    assert [(p.file, p.path, p.line, p.column) for p in found] == [
        (SERVICE, "owner", 2, 8),
        (f"{BASE}/environment/prod.yaml", "desiredCount", 1, 15),
        (ENV, "variables.SINCE", 3, 10),
    ]
    assert [p.hint for p in found] == [
        'quote it: "2024-02-30"',
        'quote it: "1:00"; YAML 1.1 reads it as a base-60 number',
        'quote it: "2023-02-29"',
    ]
