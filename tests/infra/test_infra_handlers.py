"""Every Lambda's handler path imports, and is what the templates run."""

from __future__ import annotations

import importlib

import pytest

from infra.services import HANDLERS


@pytest.mark.parametrize("service", sorted(HANDLERS))
def test_each_lambda_handler_path_imports(service: str) -> None:
    """The image CMD is ``module.attribute``: that module must import with the serve extra alone."""
    module_name, _, attribute = HANDLERS[service].rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    assert callable(handler), f"{HANDLERS[service]} is not callable"


def test_handlers_run_in_the_functions(synthesised) -> None:  # type: ignore[no-untyped-def]
    commands = {
        fn["Properties"]["FunctionName"].rsplit("-", 1)[-1]: fn["Properties"]["ImageConfig"]["Command"]
        for fn in synthesised.resources("Services", "AWS::Lambda::Function").values()
    }
    assert commands == {name: [path] for name, path in HANDLERS.items()}


def test_services_dockerfile_checks_every_handler_imports() -> None:
    from infra.images import REPO_ROOT, SERVICES_DOCKERFILE

    text = (REPO_ROOT / SERVICES_DOCKERFILE).read_text()
    for name in HANDLERS:
        assert f"'{name}'" in text
