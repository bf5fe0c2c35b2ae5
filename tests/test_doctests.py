"""Every example in a docstring of the package runs and holds (examples that lie are worse than none)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import distillguard

# modules that import a peer product only present in its own virtualenv (see docs/gateway.md)
NEEDS_PEER = {"distillguard.integrations.litellm_guardrail"}
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(distillguard.__path__, prefix="distillguard.")
    if info.name not in NEEDS_PEER and not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
