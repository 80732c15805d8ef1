"""One synthesis of the whole CDK app per test session (it takes seconds), shared by the infra tests.

The context turns every option on (pgstac profile, several départements including Corse and a DROM,
on-demand GPUs) so that one assembly covers every stack. Container images are staged as assets, as
``cdk synth`` does for an operator: no Docker, no network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CONTEXT: dict[str, Any] = {
    "env_name": "test",
    "data_bucket": "ocsge-test-data",
    "gpu_instance_types": "g5.xlarge,g4dn.2xlarge,g6",
    "gpu_capacity": "on-demand",
    "departements": "77,2a,971,S01",
    "pgstac": "on",
    "notify_email": "ops@example.org",
    "public_url": "https://ocsge.example.org",
}
PARTS = ("Network", "Pgstac", "Services", "Auth", "Storage", "Batch", "Pipeline")


@dataclass
class Synthesised:
    context: dict[str, Any]
    parts: tuple[str, ...]
    directory: Path
    templates: dict[str, dict[str, Any]]  # by part name (``Services``…)
    assertions: dict[str, Any]  # aws_cdk.assertions.Template by part name

    def resources(self, part: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[part]["Resources"].items() if v["Type"] == type_}

    def all_resources(self, type_: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [(part, k, v) for part in self.templates for k, v in self.resources(part, type_).items()]


@pytest.fixture(scope="session")
def synthesised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesised]:
    from aws_cdk.assertions import Template

    from infra.app import synth

    outdir = tmp_path_factory.mktemp("cdk.out")
    assembly = synth(CONTEXT, outdir=outdir)
    templates: dict[str, dict[str, Any]] = {}
    assertions: dict[str, Any] = {}
    for stack in assembly.stacks:
        part = stack.stack_name.rsplit("-", 1)[-1]
        templates[part] = json.loads(Path(assembly.directory, stack.template_file).read_text())
        assertions[part] = Template.from_json(templates[part])
    yield Synthesised(CONTEXT, PARTS, Path(assembly.directory), templates, assertions)
