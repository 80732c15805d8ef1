"""The STAC Lambda configured exactly as the CDK app configures it (``infra.services.service_environment``)
serves asset hrefs that a third party can read: under the public base URL, never ``s3://`` or a local path.

Each handler runs in a fresh interpreter, as a Lambda cold start does; only the storage root is pointed at
a local published catalogue instead of the products bucket."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import pytest

from support.lambda_events import api_event, invoke_cold


def _event(path: str, query: str = "limit=3") -> dict[str, Any]:
    return api_event(path, query, headers={"x-forwarded-host": "ocsge.example.org",
                                           "accept": "application/geo+json"})


def _cdk_environment(sample_root: str, public_url: str | None) -> dict[str, str]:
    from infra.config import load
    from infra.services import service_environment

    context: dict[str, str] = {"data_bucket": "ocsge-test-data"}
    if public_url:
        context["public_url"] = public_url
    env = {k: v for k, v in service_environment(load(context)).items() if "${Token" not in v}
    env.update({"OCSGE_STORAGE_ROOT": sample_root, "OCSGE_CATALOG_BACKEND": "embedded",
                "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "OCSGE",
                "AWS_DEFAULT_REGION": "eu-west-3"})
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OCSGE_")}, **env}


def _invoke(sample_root: str, public_url: str | None, event: dict[str, Any]) -> dict[str, Any]:
    return invoke_cold("services.handlers.stac.handler", event, _cdk_environment(sample_root, public_url))


def _items(sample_root: str, public_url: str | None) -> list[dict[str, Any]]:
    response = _invoke(sample_root, public_url, _event("/stac/search"))
    assert response["statusCode"] == 200, response.get("body", "")[:500]
    features = json.loads(response["body"])["features"]
    assert features, "the sample catalogue returned no item"
    return features


def _hrefs(items: list[dict[str, Any]]) -> list[str]:
    return [asset["href"] for item in items for asset in item["assets"].values()]


@pytest.mark.timeout(300)
def test_asset_hrefs_under_the_configured_public_url(sample_root: str) -> None:
    hrefs = _hrefs(_items(sample_root, "https://ocsge.example.org"))
    assert hrefs and all(h.startswith("https://ocsge.example.org/data/") for h in hrefs), hrefs[:3]


@pytest.mark.timeout(300)
def test_asset_hrefs_on_the_serving_host_when_no_public_url_is_configured(sample_root: str) -> None:
    """CloudFront's domain is not known when the functions are deployed (it fronts their API): the hrefs
    are published as ``/data/…`` and made absolute on the host of the request's own links."""
    items = _items(sample_root, None)
    for item in items:
        self_link = next(link["href"] for link in item["links"] if link["rel"] == "self")
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(self_link))
        for href in _hrefs([item]):
            assert href.startswith(f"{origin}/data/"), (href, self_link)
            assert not href.startswith(("s3://", "/")), href


@pytest.mark.timeout(300)
def test_bare_stac_path_redirects_relatively(sample_root: str) -> None:
    """``/stac`` (what people type) redirects to ``/stac/`` on the host the client used, not on the
    execute-api host the Lambda sees."""
    response = _invoke(sample_root, None, _event("/stac", "f=json"))
    assert response["statusCode"] in (307, 308)
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["location"] == "/stac/?f=json"
    assert headers["x-content-type-options"] == "nosniff"  # the Lambdas set the security headers too
