"""Fargate task sizes: every CPU / memory combination AWS accepts (Linux).

Source: the "Task size" table of the Amazon ECS developer guide (Fargate).
CPU is in CPU units (1024 = 1 vCPU), memory in MiB.
"""

from __future__ import annotations


def _steps(start: int, stop: int, step: int) -> tuple[int, ...]:
    return tuple(range(start, stop + 1, step))


FARGATE_PAIRS: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: _steps(1024, 4096, 1024),
    1024: _steps(2048, 8192, 1024),
    2048: _steps(4096, 16384, 1024),
    4096: _steps(8192, 30720, 1024),
    8192: _steps(16384, 61440, 4096),
    16384: _steps(32768, 122880, 8192),
}

CPU_VALUES: tuple[int, ...] = tuple(FARGATE_PAIRS)


def is_valid(cpu: int, memory: int) -> bool:
    return memory in FARGATE_PAIRS.get(cpu, ())


def describe_memory(cpu: int) -> str:
    """'1024, 2048, 3072 or 4096' -- the memory values allowed with this cpu."""
    values = FARGATE_PAIRS[cpu]
    if len(values) <= 4:
        return ", ".join(map(str, values[:-1])) + f" or {values[-1]}"
    step = values[1] - values[0]
    return f"{values[0]} to {values[-1]} in steps of {step}"


def nearest_cpu_for(memory: int) -> int | None:
    """The smallest cpu that accepts this memory, if any."""
    for cpu, values in FARGATE_PAIRS.items():
        if memory in values:
            return cpu
    return None
