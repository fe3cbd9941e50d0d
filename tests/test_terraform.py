"""The Terraform block lemi proposes: parseable HCL, and no way to inject into it."""

from __future__ import annotations

import hcl2
import pytest
from aws_world import config

from bot.core.config import parse_config
from bot.core.problems import Invalid
from bot.core.spec import parse_service
from bot.core.terraform import hcl_identifier, hcl_string, render_service_module

SERVICE = "name: demo-service\nowner: infra\nspec: {desiredCount: 3, resource: {cpu: 512, memory: 1024}}\n"


def parse(text: str) -> dict:
    """Parsed HCL without the parser's own bookkeeping keys (comments, block markers)."""
    return {k: v for k, v in hcl2.loads(text).items() if not k.startswith("__")}


def unquote(value: str) -> str:
    """python-hcl2 keeps string literals quoted."""
    return value[1:-1] if isinstance(value, str) and value.startswith('"') else value


def test_the_block_parses_and_carries_the_service() -> None:
    text = render_service_module(parse_service(SERVICE, "s"), config(), repository="acme/demo-service", pull_request=12)
    doc = parse(text)
    [module] = doc["module"]
    assert list(module) == ['"demo_service"'] or list(module) == ["demo_service"]
    body = next(iter(module.values()))
    values = {k: unquote(v) if isinstance(v, str) else v for k, v in body.items() if not k.startswith("__")}
    assert values["source"] == "../modules/ecs-service"
    assert values["name"] == "demo-service"
    assert values["owner"] == "infra"
    assert values["repository"] == "acme/demo-service"
    assert values["image"] == "demo-service"
    assert (values["cpu"], values["memory"], values["desired_count"]) == (512, 1024, 3)
    assert [unquote(e) for e in values["environments"]] == ["staging", "prod"]
    assert values["domain"] == "lemon"
    assert "acme/demo-service#12" in text.splitlines()[0]
    assert len(doc) == 1 and len(doc["module"]) == 1  # nothing but the one module


@pytest.mark.parametrize(
    "hostile",
    [
        'x"\n}\nresource "aws_iam_user" "evil" {\n  name = "evil',
        '${file("/etc/passwd")}',
        "%{ for x in [1] }x%{ endfor }",
        'a\\"b',
        "line\nbreak",
        "tab\there",
        "\x00\x1b",
        "$${already}",
        "back\\slash\\",
    ],
)
def test_hcl_string_round_trips_hostile_text(hostile: str) -> None:
    doc = parse(f"x = {hcl_string(hostile)}\n")
    assert list(doc) == ["x"]  # one attribute, no extra blocks
    assert "${" not in hcl_string(hostile).replace("$${", "")
    assert "%{" not in hcl_string(hostile).replace("%%{", "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 'demo"\n}\nresource "x" "y" {'),
        ("name", "demo-${var.x}"),
        ("owner", 'infra" \n evil = "1'),
        ("owner", "${jsonencode(1)}"),
        ("image", "demo%{if true}x%{endif}"),
    ],
)
def test_specs_that_try_to_inject_terraform_are_refused_before_rendering(field: str, value: str) -> None:
    spec = {"name": "demo-service", "owner": "infra", "image": "demo-service"}
    spec[field] = value
    text = (
        f"name: {json_str(spec['name'])}\nowner: {json_str(spec['owner'])}\n"
        f"spec: {{image: {json_str(spec['image'])}, resource: {{cpu: 512, memory: 1024}}}}\n"
    )
    with pytest.raises(Invalid):
        parse_service(text, "deploy/demo-service/service.yaml", repository="acme/demo-service")


def test_config_values_that_try_to_inject_are_refused() -> None:
    base = "infra: {{repository: acme/infra, module_source: {src}}}\ndomain: lemon\nenvironments:\n  staging: {{branch: develop, region: us-east-1, account_id: '111111111111', cluster: c}}\n"
    for src in ['"../m\\" }\\nresource x y {"', '"${path.root}"', '"a b"']:
        with pytest.raises(Invalid):
            parse_config(base.format(src=src))
    assert parse_config(base.format(src='"git::https://example.com/m.git//ecs?ref=v1"'))


def test_identifier() -> None:
    assert hcl_identifier("demo-service-worker") == "demo_service_worker"
    with pytest.raises(ValueError):
        hcl_identifier("1abc")


def json_str(value: str) -> str:
    import json

    return json.dumps(value)
