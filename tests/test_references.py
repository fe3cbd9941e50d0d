"""lemi.yml's ``references``: which secrets and parameters a service may reference (pure).

The model refuses patterns no name could hold (with the field and a hint);
matching is a glob on names (``*`` crosses ``/``, ``?`` one character,
``{service}`` the service's name, nothing else special); with a list set, an
ARN must be in the environment's partition, account and region, and its name
(with or without the random ``-XXXXXX`` of a secret's full ARN) must match.
The IAM resources docs/iam.md shows allow what lemi allows.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import pytest
from aws_world import ACCOUNT, LEMI_YML, REGION

from bot.core.config import Config, References, parse_config
from bot.core.problems import Invalid
from bot.core.references import parameter_resources, refuse_parameters, refuse_secrets, secret_resources
from bot.core.refs import parse_parameter, parse_secret

SERVICE = "demo-service"
SECRETS = ["{service}/*", "shared/*", "exact/token", "v?/key"]
PARAMETERS = ["/{service}/*", "flat", "/exact"]


def config(references: str = "") -> Config:
    return parse_config(LEMI_YML + references)


def problems(references: str) -> list[tuple[str, int, int, str, str]]:
    with pytest.raises(Invalid) as caught:
        config(references)
    return [(p.path, p.line, p.column, p.message, p.hint) for p in caught.value.problems]


# ---- the model -----------------------------------------------------------------------------


def test_absent_means_no_restriction_and_empty_lists_are_kept() -> None:
    assert config().references == References()
    assert config().references.secrets is None and config().references.parameters is None
    refs = config('references:\n  secrets: []\n  parameters: ["/{service}/*"]\n').references
    assert refs.secrets == [] and refs.parameters == ["/{service}/*"]


def test_valid_patterns_are_accepted() -> None:
    refs = config(
        'references:\n  secrets: ["{service}/*", "shared/*", "a/b+c=d.e@f_g-h", "?", "{service}"]\n'
        '  parameters: ["/{service}/*", "flat", "*", "?x/y", "/a_b.c-d/{service}"]\n'
    ).references
    assert refs.secrets is not None and len(refs.secrets) == 5
    assert refs.parameters is not None and len(refs.parameters) == 5


LINE = LEMI_YML.count("\n") + 2  # the line of the first list


@pytest.mark.parametrize(
    ("yaml", "path", "column", "message", "hint"),
    [
        ('  secrets: ["a b"]\n', "references.secrets[0]", 13, "'a b' is not a secret pattern: ' ' cannot appear in a secret name",
         "use the characters of secret names, * (any run of characters), ? (one character) and {service}"),
        ('  secrets: ["{env}/*"]\n', "references.secrets[0]", 13,
         "'{env}/*' is not a secret pattern: '{' '}' cannot appear in a secret name (only {service} is replaced)", "e.g. \"{service}/*\""),
        ('  secrets: ["[a-z]*"]\n', "references.secrets[0]", 13, "'[' ']' cannot appear in a secret name", ""),
        ('  secrets: [""]\n', "references.secrets[0]", 13, "a secret pattern has 1 to 512 characters", ""),
        ('  secrets: "shared/*"\n', "references.secrets", 12, "expected a list", ""),
        ('  parameters: ["/a/b+c"]\n', "references.parameters[0]", 16,
         "'/a/b+c' is not a parameter pattern: '+' cannot appear in a parameter name", "e.g. \"/{service}/*\""),
        ('  parameters: ["{service}/*"]\n', "references.parameters[0]", 16,
         "'{service}/*' can never match: a Parameter Store name with a / is a path, and paths start with /",
         "start it with /, e.g. /{service}/*"),
        ('  secret: ["x"]\n', "references.secret", 3, "unknown field 'secret'", "did you mean `secrets`?"),
    ],
)  # fmt: skip
def test_invalid_patterns_name_the_field_and_say_how_to_fix_them(
    yaml: str, path: str, column: int, message: str, hint: str
) -> None:
    [(got_path, line, got_column, got_message, got_hint)] = problems("references:\n" + yaml)
    assert (got_path, line, got_column) == (path, LINE, column)
    assert message in got_message
    assert hint in got_hint


# ---- matching ------------------------------------------------------------------------------

STAGING = config().environment("staging")
SM = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
SSM = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"


def refs(secrets: list[str] | None = SECRETS, parameters: list[str] | None = PARAMETERS) -> References:
    return References(secrets=secrets, parameters=parameters)


def secret_refused(text: str, references: References | None = None) -> str | None:
    found = refuse_secrets(references or refs(), "staging", STAGING, SERVICE, {"VAR": parse_secret(text)})
    return found["VAR"].message if found else None


def parameter_refused(text: str, references: References | None = None) -> str | None:
    found = refuse_parameters(references or refs(), "staging", STAGING, SERVICE, {"VAR": parse_parameter(text)})
    return found["VAR"].message if found else None


@pytest.mark.parametrize(
    "text",
    [
        "demo-service/db-password",
        "demo-service/a/b",  # * crosses /
        "demo-service/db:username::",  # a JSON key of an allowed secret
        "shared/token",
        "exact/token",
        "v1/key",
        f"{SM}demo-service/db",  # a partial ARN in the environment
        f"{SM}demo-service/db-AbC123",  # a full ARN: the random suffix
        f"{SM}exact/token-AbC123",  # ... matches without it
        f"{SM}exact/token",
        f"{SM}demo-service/db-AbC123:username::",
    ],
)
def test_allowed_secrets(text: str) -> None:
    assert secret_refused(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("other-service/db", "does not allow demo-service"),
        ("demo-service", "does not allow"),  # {service}/* needs the /
        ("Demo-service/db", "does not allow"),  # case matters
        ("demo-servicex/db", "does not allow"),
        ("exact/token2", "does not allow"),
        ("v10/key", "does not allow"),  # ? is one character
        ("vx.key", "does not allow"),
        (f"{SM}exact/token-AbC12", "does not allow"),  # not AWS's six-character suffix
        (f"{SM}exact/token-AbC1234", "does not allow"),
        (f"{SM}other/db-AbC123", "does not allow"),
        (
            f"arn:aws:secretsmanager:{REGION}:999999999999:secret:demo-service/db",
            f"account 999999999999 (not {ACCOUNT})",
        ),
        (f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:demo-service/db", f"region eu-west-1 (not {REGION})"),
        (f"arn:aws-cn:secretsmanager:{REGION}:{ACCOUNT}:secret:demo-service/db", "partition aws-cn (not aws)"),
    ],
)
def test_refused_secrets(text: str, why: str) -> None:
    message = secret_refused(text)
    assert message is not None and why in message, message


def test_dot_and_plus_are_literal() -> None:
    only = refs(secrets=["a.b+c"])
    assert secret_refused("a.b+c", only) is None
    assert secret_refused("aXb+c", only) is not None
    assert secret_refused("a.bbc", only) is not None


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("/demo-service/feature-x", True),
        ("/demo-service/a/b", True),
        ("flat", True),
        ("/exact", True),
        ("/flat", False),
        ("exact", False),
        ("/other/feature-x", False),
        ("feature-x", False),
        (f"{SSM}/demo-service/feature-x", True),  # ...:parameter/a/b is /a/b
        (f"{SSM}/flat", True),  # ...:parameter/flat is flat
        (f"{SSM}/exact", False),  # ... so it is not /exact
        (f"{SSM}/other/x", False),
        (f"arn:aws:ssm:{REGION}:999999999999:parameter/demo-service/feature-x", False),
        (f"arn:aws:ssm:us-west-2:{ACCOUNT}:parameter/demo-service/feature-x", False),
    ],
)
def test_parameters(text: str, allowed: bool) -> None:
    assert (parameter_refused(text) is None) is allowed


def test_absent_lists_allow_anything_even_other_accounts() -> None:
    other = f"arn:aws:secretsmanager:{REGION}:999999999999:secret:anything"
    assert secret_refused(other, refs(secrets=None)) is None
    assert parameter_refused(f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/x/y", refs(parameters=None)) is None
    # and one list set does not restrict the other kind
    assert secret_refused("anything", refs(secrets=None, parameters=[])) is None


def test_an_empty_list_allows_nothing() -> None:
    message = secret_refused("demo-service/db", refs(secrets=[]))
    assert (
        message
        == "lemi.yml does not allow demo-service to reference this secret (allowed: none: references.secrets is empty)"
    )
    assert parameter_refused("/demo-service/x", refs(parameters=[])) is not None


def test_the_finding_names_the_variable_the_reference_the_patterns_and_the_fix() -> None:
    found = refuse_secrets(refs(), "staging", STAGING, SERVICE, {
        "DB_PASSWORD": parse_secret("demo-service/db-password"), "TOKEN": parse_secret("other-team/token")})  # fmt: skip
    assert list(found) == ["TOKEN"]
    finding = found["TOKEN"]
    assert (finding.check, finding.subject) == ("secret", "TOKEN (other-team/token)")
    assert finding.message == (
        "lemi.yml does not allow demo-service to reference this secret "
        "(allowed: demo-service/*, shared/*, exact/token, v?/key)"
    )
    assert "references.secrets in lemi.yml" in finding.hint and "matches an allowed pattern" in finding.hint
    [parameter] = refuse_parameters(
        refs(), "staging", STAGING, SERVICE, {"FLAG": parse_parameter("/other/flag")}
    ).values()
    assert (parameter.check, parameter.subject) == ("parameter", "FLAG (/other/flag)")
    assert "(allowed: /demo-service/*, flat, /exact)" in parameter.message
    assert "references.parameters in lemi.yml" in parameter.hint


def test_an_arn_elsewhere_says_where_the_environment_is() -> None:
    other = "arn:aws:secretsmanager:eu-west-1:999999999999:secret:demo-service/db"
    [finding] = refuse_secrets(refs(), "staging", STAGING, SERVICE, {"DB": parse_secret(other)}).values()
    assert finding.message.startswith(
        f"the ARN points outside staging: account 999999999999 (not {ACCOUNT}), region eu-west-1 (not {REGION})"
    )
    assert f"account {ACCOUNT}, region {REGION}" in finding.hint


# ---- the IAM resources of docs/iam.md allow what lemi allows ---------------------------------


@pytest.mark.parametrize(
    "name",
    ["demo-service/db", "demo-service/a/b", "shared/x", "exact/token", "v1/key",
     "other/db", "exact/token2", "v10/key", "demo-servicex/db"],
)  # fmt: skip
def test_execution_role_resources_allow_exactly_the_allowed_secrets(name: str) -> None:
    resources = secret_resources(SECRETS, STAGING, SERVICE)
    full_arn = f"{SM}{name}-AbC123"  # what IAM sees: the full ARN, with its suffix
    by_iam = any(fnmatchcase(full_arn, r) for r in resources)
    assert by_iam is (secret_refused(name) is None), (name, resources)


@pytest.mark.parametrize("name", ["/demo-service/x", "/demo-service/a/b", "flat", "/exact", "/other/x", "/flat"])
def test_execution_role_resources_allow_exactly_the_allowed_parameters(name: str) -> None:
    resources = parameter_resources(PARAMETERS, STAGING, SERVICE)
    arn = parse_parameter(name).value_from(REGION, ACCOUNT)
    by_iam = any(fnmatchcase(arn, r) for r in resources)
    # "/flat" and "flat" have the same ARN: IAM cannot tell them apart
    assert by_iam is (parameter_refused(name) is None or name == "/flat"), (name, resources)


def test_the_shared_deployer_role_only_approximates_service() -> None:
    resources = secret_resources(["{service}/*"], STAGING)
    assert resources == [f"{SM}*/*"]
    assert fnmatchcase(f"{SM}other-service/db-AbC123", resources[0])  # IAM allows it; lemi refuses it
    assert secret_refused("other-service/db", refs(secrets=["{service}/*"])) is not None
    assert not re.search(r"\{service\}", "".join(parameter_resources(["/{service}/*"], STAGING)))
