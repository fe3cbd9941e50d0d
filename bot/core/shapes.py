"""What AWS describes, in the shape of what lemi asked for (pure).

AWS answers with defaults lemi never set (a task definition's ``volumes: []``, a schedule's
``PlatformVersion``); comparing what lemi wants with what AWS has means comparing only what lemi
sets: :func:`project`.
"""

from __future__ import annotations

from typing import Any


def project(actual: Any, wanted: Any) -> Any:
    """``actual`` restricted to the shape of ``wanted``: the keys ``wanted`` has, at every depth
    (lists item by item when they are as long); anything else as it is."""
    if isinstance(wanted, dict) and isinstance(actual, dict):
        return {k: project(actual[k], v) for k, v in wanted.items() if k in actual}
    if isinstance(wanted, list) and isinstance(actual, list) and len(wanted) == len(actual):
        return [project(a, w) for a, w in zip(actual, wanted, strict=True)]
    return actual
