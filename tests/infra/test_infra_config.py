"""Context validation: every bad value stops the synth before any construct, naming the key and value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import InfraConfigError, load

REPO = Path(__file__).resolve().parents[2]
GOOD = {"data_bucket": "ocsge-prod-data"}


def test_defaults_and_canonical_values() -> None:
    config = load({**GOOD, "departements": "1, 2a ,D971", "gpu_instance_types": ["G5.XLARGE", "g4dn"],
                   "gpu_capacity": "ON_DEMAND", "pgstac": "yes"})
    assert config.departements == ("01", "2A", "971")
    assert config.gpu_instance_types == ("g5.xlarge", "g4dn")
    assert config.gpu_capacity == "on-demand" and not config.spot
    assert config.pgstac is True
    assert config.env_name == "dev"
    assert config.storage_root == "s3://ocsge-prod-data/data"
    assert config.tmp_prefix == "data/_tmp/"  # ocsge.storage stages under {root}/_tmp/
    assert config.stac_prefix == "data/stac"
    assert config.asset_base_url == "/data"  # no public_url: a path, resolved on the serving host
    assert load({**GOOD, "public_url": "https://ocsge.example.org/", "data_prefix": "v1/data"}).asset_base_url == (
        "https://ocsge.example.org/v1/data"
    )


def test_stac_prefix_matches_the_publish_code() -> None:
    """The CloudFront behaviour of the catalogue covers what ``ocsge publish`` writes."""
    from catalog.publish import STAC_PREFIX

    assert load(GOOD).stac_prefix == "data/" + STAC_PREFIX.rstrip("/")


@pytest.mark.parametrize("key", ["catalog_bucket", "catalog_prefix"])
def test_removed_catalogue_keys_are_refused_with_the_new_place(key: str) -> None:
    with pytest.raises(InfraConfigError) as info:
        load({**GOOD, key: "ocsge-prod-catalog"})
    message = str(info.value)
    assert key in message and "removed" in message and "s3://ocsge-prod-data/data/stac/" in message


def test_tmp_prefix_matches_the_storage_code() -> None:
    from ocsge.storage import TMP_PREFIX

    assert load(GOOD).tmp_prefix.endswith("/" + TMP_PREFIX)


def test_all_departements() -> None:
    config = load({**GOOD, "departements": "all"})
    assert len(config.departements) == 101 and "2B" in config.departements and "976" in config.departements


def test_json_list_from_the_command_line() -> None:
    assert load({**GOOD, "departements": '["77", "13"]'}).departements == ("77", "13")


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({}, "data_bucket"),
        ({"data_bucket": ""}, "data_bucket"),
        ({**GOOD, "data_bucket": "Bad_Bucket"}, "'Bad_Bucket'"),
        ({**GOOD, "catalog_bucket": "c-bucket"}, "catalog_bucket"),
        ({**GOOD, "gpu_instance_types": "g5.xlarge,t3.micro"}, "'t3.micro'"),
        ({**GOOD, "gpu_instance_types": "g5.huge"}, "'g5.huge'"),
        ({**GOOD, "gpu_instance_types": ""}, "gpu_instance_types"),
        ({**GOOD, "departements": "77;13"}, "'77;13'"),
        ({**GOOD, "departements": "77,,13"}, "departements"),
        ({**GOOD, "departements": "77,96"}, "'96'"),
        ({**GOOD, "departements": "20"}, "'20'"),
        ({**GOOD, "departements": "77,077"}, "'077'"),
        ({**GOOD, "departements": '["77",'}, "departements"),
        ({**GOOD, "gpu_capacity": "reserved"}, "'reserved'"),
        ({**GOOD, "pgstac": "maybe"}, "'maybe'"),
        ({**GOOD, "env_name": "Prod_1"}, "'Prod_1'"),
        ({**GOOD, "gpu_max_vcpus": "lots"}, "'lots'"),
        ({**GOOD, "data_prefix": "tiles"}, "'tiles'"),
        ({**GOOD, "data_prefix": "../x"}, "'../x'"),
        ({**GOOD, "notify_email": "nobody"}, "'nobody'"),
        ({**GOOD, "services_image": "no-tag"}, "'no-tag'"),
    ],
)
def test_bad_values_are_named(context: dict[str, object], named: str) -> None:
    with pytest.raises(InfraConfigError) as info:
        load(context)
    assert named in str(info.value)


def test_pipeline_stacks_split_large_lists() -> None:
    from infra.pipeline import MACHINES_PER_STACK, pipeline_parts

    assert pipeline_parts(("77", "2A")) == [("Pipeline", ("77", "2A"))]
    parts = pipeline_parts(load({**GOOD, "departements": "all"}).departements)
    assert [name for name, _ in parts] == ["Pipeline1", "Pipeline2", "Pipeline3"]
    assert all(len(chunk) <= MACHINES_PER_STACK for _, chunk in parts)
    assert sum(len(chunk) for _, chunk in parts) == 101


def test_synth_refuses_before_building() -> None:
    from infra.app import synth

    with pytest.raises(InfraConfigError, match="unknown GPU instance type 'p2.xlarge'"):
        synth({**GOOD, "gpu_instance_types": "p2.xlarge"})


@pytest.mark.parametrize(
    ("context", "named"),
    [({"departements": "77,99"}, ("'99'", "departements")),
     ({"catalog_bucket": "ocsge-prod-catalog"}, ("catalog_bucket", "/data/stac/"))],
)
def test_cdk_cli_entry_point_names_the_bad_value(tmp_path: Path, context: dict[str, str],
                                                 named: tuple[str, ...]) -> None:
    """``cdk synth`` runs ``python3 app.py`` in infra/ with the context in CDK_CONTEXT_JSON."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**GOOD, **context}),
           "CDK_OUTDIR": str(tmp_path / "cdk.out")}
    proc = subprocess.run([sys.executable, "app.py"], cwd=REPO / "infra", env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert all(text in proc.stderr for text in named), proc.stderr
