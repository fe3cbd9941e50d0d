"""Fargate task sizes: every CPU / memory pair AWS accepts is accepted, its neighbours are refused.

The table below is written from the "Task size" table of the Amazon ECS
developer guide (Linux, Fargate), independently of ``bot/fargate.py``:
a test that read the product's own table would agree with any typo in it.

    CPU (units)   vCPU    memory
    256           .25     512 MiB, 1 GB, 2 GB
    512           .5      1 GB - 4 GB, 1 GB increments
    1024          1       2 GB - 8 GB, 1 GB increments
    2048          2       4 GB - 16 GB, 1 GB increments
    4096          4       8 GB - 30 GB, 1 GB increments
    8192          8       16 GB - 60 GB, 4 GB increments
    16384         16      32 GB - 120 GB, 8 GB increments
"""

from __future__ import annotations

import pytest

from bot.core.problems import Invalid, Problem
from bot.core.spec import parse_environment, parse_service

GB = 1024

# cpu -> (explicit memory values) or (min GB, max GB, step GB)
AWS_TASK_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1 * GB, 2 * GB),
    512: tuple(gb * GB for gb in range(1, 4 + 1)),
    1024: tuple(gb * GB for gb in range(2, 8 + 1)),
    2048: tuple(gb * GB for gb in range(4, 16 + 1)),
    4096: tuple(gb * GB for gb in range(8, 30 + 1)),
    8192: tuple(gb * GB for gb in range(16, 60 + 1, 4)),
    16384: tuple(gb * GB for gb in range(32, 120 + 1, 8)),
}
VALID_PAIRS = [(cpu, memory) for cpu, memories in AWS_TASK_SIZES.items() for memory in memories]

SERVICE_FILE = "deploy/demo-service/service.yaml"
ENV_FILE = "deploy/demo-service/environment/staging.yaml"


def test_the_independent_table_has_every_size() -> None:
    # 3 + 4 + 7 + 13 + 23 + 12 + 12 sizes; guards this file's table against typos
    assert len(VALID_PAIRS) == 74
    assert AWS_TASK_SIZES[8192][-1] == 61440 and AWS_TASK_SIZES[16384][-1] == 122880


def service_yaml(cpu: object, memory: object) -> str:
    # cpu on line 5 column 10, memory on line 6 column 13
    return f"name: demo-service\nowner: team-a\nspec:\n  resource:\n    cpu: {cpu}\n    memory: {memory}\n"


def environment_yaml(cpu: object, memory: object) -> str:
    # cpu on line 3 column 8, memory on line 4 column 11
    return f"desiredCount: 2\nresource:\n  cpu: {cpu}\n  memory: {memory}\n"


def refusal(call, *args, **kwargs) -> Problem:  # type: ignore[no-untyped-def]
    with pytest.raises(Invalid) as info:
        call(*args, **kwargs)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def memory_values_phrase(cpu: int) -> str:
    """How the hint lists the memory values allowed with ``cpu``."""
    values = AWS_TASK_SIZES[cpu]
    if cpu == 256 or cpu == 512:  # short lists are spelled out
        return ", ".join(map(str, values[:-1])) + f" or {values[-1]}"
    return f"{values[0]} to {values[-1]} in steps of {values[1] - values[0]}"


def smallest_cpu_for(memory: int) -> int | None:
    return next((cpu for cpu, memories in AWS_TASK_SIZES.items() if memory in memories), None)


def neighbours() -> list[tuple[int, int]]:
    """For each cpu: one step below its minimum, one above its maximum, and a value between two steps."""
    out = [(256, 256), (256, 3072), (256, 1536)]
    for cpu, values in AWS_TASK_SIZES.items():
        if cpu == 256:
            continue
        step = values[1] - values[0]
        out += [(cpu, values[0] - step), (cpu, values[-1] + step), (cpu, values[0] + step // 2)]
    out += [(8192, 18432), (16384, 36864), (16384, 102400)]
    return list(dict.fromkeys(out))


NEIGHBOURS = neighbours()
INVALID_CPUS = [128, 300, 768, 3072, 32768, 0, -256]


def test_neighbours_are_really_invalid() -> None:
    for cpu, memory in NEIGHBOURS:
        assert memory not in AWS_TASK_SIZES[cpu], (cpu, memory)


@pytest.mark.parametrize(("cpu", "memory"), VALID_PAIRS)
def test_service_accepts_every_fargate_pair(cpu: int, memory: int) -> None:
    service = parse_service(service_yaml(cpu, memory), SERVICE_FILE, repository="acme/demo-service")
    assert (service.spec.resource.cpu, service.spec.resource.memory) == (cpu, memory)


@pytest.mark.parametrize(("cpu", "memory"), VALID_PAIRS)
def test_environment_override_accepts_every_fargate_pair(cpu: int, memory: int) -> None:
    env = parse_environment(environment_yaml(cpu, memory), ENV_FILE)
    assert env.resource is not None
    assert (env.resource.cpu, env.resource.memory) == (cpu, memory)


def assert_memory_refusal(problem: Problem, cpu: int, memory: int) -> None:
    assert f"memory {memory}" in problem.message
    assert f"cpu {cpu}" in problem.message
    assert "Fargate" in problem.message
    # the hint lists the memory values that go with this cpu
    assert f"with cpu {cpu}, memory must be {memory_values_phrase(cpu)}" in problem.hint
    # ... and, when another cpu takes this memory, names the smallest such cpu
    fits = smallest_cpu_for(memory)
    if fits is None:
        assert "keep memory" not in problem.hint
    else:
        assert f"keep memory {memory} and use cpu {fits}" in problem.hint


@pytest.mark.parametrize(("cpu", "memory"), NEIGHBOURS)
def test_service_refuses_memory_next_to_the_valid_range(cpu: int, memory: int) -> None:
    problem = refusal(parse_service, service_yaml(cpu, memory), SERVICE_FILE, repository="acme/demo-service")
    assert (problem.file, problem.path, problem.line, problem.column) == (
        SERVICE_FILE,
        "spec.resource.memory",
        6,
        13,
    )
    assert_memory_refusal(problem, cpu, memory)
    assert f"{SERVICE_FILE}:6:13: spec.resource.memory: " in problem.render()


@pytest.mark.parametrize(("cpu", "memory"), NEIGHBOURS)
def test_environment_override_refuses_memory_next_to_the_valid_range(cpu: int, memory: int) -> None:
    problem = refusal(parse_environment, environment_yaml(cpu, memory), ENV_FILE)
    assert (problem.file, problem.path, problem.line, problem.column) == (ENV_FILE, "resource.memory", 4, 11)
    assert_memory_refusal(problem, cpu, memory)


def test_hints_for_one_example_read_as_a_sentence() -> None:
    problem = refusal(parse_service, service_yaml(8192, 18432), SERVICE_FILE, repository="acme/demo-service")
    assert problem.hint == (
        "with cpu 8192, memory must be 16384 to 61440 in steps of 4096; or keep memory 18432 and use cpu 4096"
    )
    problem = refusal(parse_service, service_yaml(256, 4096), SERVICE_FILE, repository="acme/demo-service")
    assert problem.hint == "with cpu 256, memory must be 512, 1024 or 2048; or keep memory 4096 and use cpu 512"


def assert_cpu_refusal(problem: Problem, cpu: int) -> None:
    assert problem.message.startswith(f"{cpu} ")
    assert "not a Fargate CPU size" in problem.message
    for valid in AWS_TASK_SIZES:
        assert str(valid) in problem.hint
    assert "1024 = 1 vCPU" in problem.hint


@pytest.mark.parametrize("cpu", INVALID_CPUS)
def test_service_refuses_cpu_that_is_not_a_fargate_size(cpu: int) -> None:
    # one problem only: no follow-on complaint about memory for a cpu that does not exist
    problem = refusal(parse_service, service_yaml(cpu, 2048), SERVICE_FILE, repository="acme/demo-service")
    assert (problem.file, problem.path, problem.line, problem.column) == (SERVICE_FILE, "spec.resource.cpu", 5, 10)
    assert_cpu_refusal(problem, cpu)


@pytest.mark.parametrize("cpu", INVALID_CPUS)
def test_environment_override_refuses_cpu_that_is_not_a_fargate_size(cpu: int) -> None:
    problem = refusal(parse_environment, environment_yaml(cpu, 2048), ENV_FILE)
    assert (problem.file, problem.path, problem.line, problem.column) == (ENV_FILE, "resource.cpu", 3, 8)
    assert_cpu_refusal(problem, cpu)


def test_flow_style_resource_points_at_the_memory_value() -> None:
    text = "name: demo-service\nowner: team-a\nspec:\n  resource: {cpu: 8192, memory: 18432}\n"
    problem = refusal(parse_service, text, SERVICE_FILE, repository="acme/demo-service")
    line = text.splitlines()[3]
    assert (problem.path, problem.line, problem.column) == ("spec.resource.memory", 4, line.index("18432") + 1)


@pytest.mark.parametrize(
    ("field", "text", "line", "column"),
    [
        ("cpu", "    cpu: '1024'\n    memory: 2048\n", 5, 10),
        ("memory", '    cpu: 1024\n    memory: "2048"\n', 6, 13),
    ],
)
def test_size_written_as_a_string_says_to_drop_the_quotes(field: str, text: str, line: int, column: int) -> None:
    yaml_text = "name: demo-service\nowner: team-a\nspec:\n  resource:\n" + text
    problem = refusal(parse_service, yaml_text, SERVICE_FILE, repository="acme/demo-service")
    value = "1024" if field == "cpu" else "2048"
    assert (problem.path, problem.line, problem.column) == (f"spec.resource.{field}", line, column)
    assert f"expected a whole number, but '{value}' is a string" in problem.message
    assert problem.hint == f"write it without quotes: {value}"


def test_environment_without_resource_keeps_the_service_size() -> None:
    env = parse_environment("desiredCount: 3\n", ENV_FILE)
    assert env.resource is None
