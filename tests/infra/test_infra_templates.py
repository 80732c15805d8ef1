"""The synthesised CloudFormation templates: what the issue's "done when" asks, checked on the real output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.batch import STEPS
from infra.config import STEP_NAMES
from infra.services import HANDLERS, SERVICES, TRUST_FORWARDED_ENV
from ocsge.gdal_env import GDAL_ENV

# ``synthesised`` (tests/infra/conftest.py): the templates of one synthesis of the whole app.
Synthesised = Any

pytestmark = pytest.mark.timeout(300)


def test_every_stack_is_synthesised(synthesised: Synthesised) -> None:
    assert sorted(synthesised.templates) == sorted(synthesised.parts)


def test_templates_pass_cloudformation_validation(synthesised: Synthesised) -> None:
    """CDK's built-in CloudFormation schema validation found nothing (a report is written on every synth)."""
    report = json.loads((synthesised.directory / "validation-report.json").read_text())
    violations = [v for plugin in report.get("pluginReports", []) for v in plugin.get("violations", [])]
    assert violations == [], json.dumps(violations, indent=1)[:3000]


# --- storage -------------------------------------------------------------------------------------------


def test_buckets_are_private_encrypted_and_refuse_plain_http(synthesised: Synthesised) -> None:
    buckets = synthesised.resources("Storage", "AWS::S3::Bucket")
    # One bucket: the catalogue is published under the storage root ({data_prefix}/stac/).
    assert {b["Properties"]["BucketName"] for b in buckets.values()} == {synthesised.context["data_bucket"]}
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert "WebsiteConfiguration" not in props and "AccessControl" not in props
        assert bucket["DeletionPolicy"] == "Retain"
    storage = synthesised.assertions["Storage"]
    storage.resource_count_is("AWS::S3::BucketPolicy", 1)
    storage.all_resources_properties("AWS::S3::BucketPolicy", {
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        })])},
    })
    # Nothing but CloudFront (origin access control) is allowed in by the bucket policies.
    for policy in synthesised.resources("Storage", "AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
                assert statement["Action"] == "s3:GetObject"
                assert "AWS:SourceArn" in statement["Condition"]["StringEquals"]


def test_temporary_keys_expire(synthesised: Synthesised) -> None:
    from ocsge.storage import TMP_PREFIX

    rules = [
        rule
        for bucket in synthesised.resources("Storage", "AWS::S3::Bucket").values()
        if bucket["Properties"]["BucketName"] == synthesised.context["data_bucket"]
        for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    ]
    tmp = [r for r in rules if r.get("Prefix", "").endswith(TMP_PREFIX)]
    assert tmp and tmp[0]["Status"] == "Enabled" and 0 < tmp[0]["ExpirationInDays"] <= 7
    assert tmp[0]["Prefix"] == "data/" + TMP_PREFIX


def test_cloudfront_uses_origin_access_control_for_the_bucket(synthesised: Synthesised) -> None:
    synthesised.assertions["Storage"].resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    (dist,) = synthesised.resources("Storage", "AWS::CloudFront::Distribution").values()
    s3_origins = [o for o in dist["Properties"]["DistributionConfig"]["Origins"] if "S3OriginConfig" in o]
    assert len(s3_origins) == 1  # shared by /data/stac/* and /data/*
    assert all(o.get("OriginAccessControlId") for o in s3_origins)


# --- CloudFront ---------------------------------------------------------------------------------------------


def _behaviours(synthesised: Synthesised) -> dict[str, dict[str, Any]]:
    (dist,) = synthesised.resources("Storage", "AWS::CloudFront::Distribution").values()
    config = dist["Properties"]["DistributionConfig"]
    out = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    out["default"] = config["DefaultCacheBehavior"]
    return out


def _cache_policy(synthesised: Synthesised, behaviour: dict[str, Any]) -> dict[str, Any]:
    ref = behaviour["CachePolicyId"]
    assert isinstance(ref, dict), f"expected one of our cache policies, got managed {ref}"
    return synthesised.templates["Storage"]["Resources"][ref["Ref"]]["Properties"]["CachePolicyConfig"]


def test_every_service_path_has_a_behaviour(synthesised: Synthesised) -> None:
    behaviours = _behaviours(synthesised)
    for pattern in ("/stac/*", "/wmts*", "/wms*", "/tiles/*", "/vector/*", "/downloads/*", "/stats/*",
                    "/data/stac/*", "/data/*", "default"):
        assert pattern in behaviours, pattern
        assert behaviours[pattern]["ViewerProtocolPolicy"] == "redirect-to-https"
        assert behaviours[pattern]["ResponseHeadersPolicyId"]  # CORS


@pytest.mark.parametrize("pattern", ["/tiles/*", "/wmts*", "/wms*", "/vector/*"])
def test_cloudfront_caches_tiles(synthesised: Synthesised, pattern: str) -> None:
    policy = _cache_policy(synthesised, _behaviours(synthesised)[pattern])
    assert policy["DefaultTTL"] >= 3600 and policy["MaxTTL"] >= policy["DefaultTTL"]
    assert policy["ParametersInCacheKeyAndForwardedToOrigin"]["CookiesConfig"]["CookieBehavior"] == "none"
    # only the host (written at the edge, see test_cache_key_covers_the_host_the_links_are_built_from)
    assert policy["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]["Headers"] == ["X-Forwarded-Host"]


def test_consolidation_answers_are_never_cached_and_get_credentials(synthesised: Synthesised) -> None:
    behaviour = _behaviours(synthesised)["/consolidation/*"]
    assert behaviour["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # managed CachingDisabled
    # AllViewerExceptHostHeader: with caching disabled it forwards Authorization and the session cookie
    assert behaviour["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
    assert "POST" in behaviour["AllowedMethods"]


def test_api_responses_are_cached_briefly(synthesised: Synthesised) -> None:
    for pattern in ("/stac/*", "/downloads/*", "/stats/*", "default"):
        policy = _cache_policy(synthesised, _behaviours(synthesised)[pattern])
        assert 0 < policy["DefaultTTL"] <= 300


def test_published_catalogue_is_cached_briefly_and_products_long(synthesised: Synthesised) -> None:
    """``ocsge publish`` rewrites {data_prefix}/stac/ in place: seen within a minute; the rest of the data
    prefix (COGs, PMTiles, archives) keeps the managed CachingOptimized policy."""
    (dist,) = synthesised.resources("Storage", "AWS::CloudFront::Distribution").values()
    patterns = [b["PathPattern"] for b in dist["Properties"]["DistributionConfig"]["CacheBehaviors"]]
    assert patterns.index("/data/stac/*") < patterns.index("/data/*")  # first match wins
    behaviours = _behaviours(synthesised)
    assert behaviours["/data/stac/*"]["TargetOriginId"] == behaviours["/data/*"]["TargetOriginId"]
    assert behaviours["/data/stac/*"]["CachePolicyId"] == behaviours["/stac/*"]["CachePolicyId"]  # the api one
    assert _cache_policy(synthesised, behaviours["/data/stac/*"])["DefaultTTL"] <= 60
    caching_optimized = "658327ea-f89d-4fab-a63d-7e88639e58f6"  # managed policy id
    assert behaviours["/data/*"]["CachePolicyId"] == caching_optimized
    assert not any(p.startswith("/catalog") for p in patterns)


def test_cache_key_covers_the_host_the_links_are_built_from(synthesised: Synthesised) -> None:
    """Every behaviour on the services keys on X-Forwarded-Host, and that header comes from a viewer-request
    function that writes it from the viewer's Host (so a client can neither choose it nor split the cache)."""
    functions = synthesised.resources("Storage", "AWS::CloudFront::Function")
    for pattern, behaviour in _behaviours(synthesised).items():
        policy_id = behaviour["CachePolicyId"]
        if not isinstance(policy_id, dict):
            assert pattern in ("/data/*", "/consolidation/*"), pattern  # managed: S3 answers / nothing cached
            if pattern == "/data/*":
                continue
        else:
            config = _cache_policy(synthesised, behaviour)["ParametersInCacheKeyAndForwardedToOrigin"]
            assert config["HeadersConfig"] == {"HeaderBehavior": "whitelist", "Headers": ["X-Forwarded-Host"]}, pattern
        (assoc,) = behaviour["FunctionAssociations"]
        assert assoc["EventType"] == "viewer-request"
        code = functions[assoc["FunctionARN"]["Fn::GetAtt"][0]]["Properties"]["FunctionCode"]
        assert "headers['x-forwarded-host'] = " in code and '"forwarded"' in code, pattern


def test_ogc_behaviours_normalise_their_query_string(synthesised: Synthesised) -> None:
    functions = synthesised.resources("Storage", "AWS::CloudFront::Function")
    behaviours = _behaviours(synthesised)
    for pattern in ("/wmts*", "/wms*"):
        (assoc,) = behaviours[pattern]["FunctionAssociations"]
        assert assoc["EventType"] == "viewer-request"
        code = functions[assoc["FunctionARN"]["Fn::GetAtt"][0]]["Properties"]["FunctionCode"]
        for key in ("tilematrixset", "TILEMATRIXSET", "layers", "LAYERS", "bbox", "BBOX"):
            assert f'"{key}"' in code
    # The tile behaviours do not go through the OGC normaliser (their query strings are not KVP).
    (tiles_fn,) = behaviours["/tiles/*"]["FunctionAssociations"]
    assert tiles_fn["FunctionARN"] != behaviours["/wmts*"]["FunctionAssociations"][0]["FunctionARN"]


def test_api_origin_gets_everything_but_the_host(synthesised: Synthesised) -> None:
    all_viewer_except_host = "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # managed policy id
    for pattern in ("/stac/*", "/tiles/*", "/wmts*", "default"):
        assert _behaviours(synthesised)[pattern]["OriginRequestPolicyId"] == all_viewer_except_host
    assert "POST" in _behaviours(synthesised)["/stac/*"]["AllowedMethods"]  # STAC POST /search
    assert "POST" not in _behaviours(synthesised)["/tiles/*"]["AllowedMethods"]


def test_few_cache_policies(synthesised: Synthesised) -> None:
    """Cache policies are an account-wide quota of 20 that cannot be raised."""
    assert len(synthesised.resources("Storage", "AWS::CloudFront::CachePolicy")) <= 3


# --- Batch --------------------------------------------------------------------------------------------------


def _job_definitions(synthesised: Synthesised) -> dict[str, dict[str, Any]]:
    return {
        v["Properties"]["JobDefinitionName"].rsplit("-", 1)[-1]: v["Properties"]
        for v in synthesised.resources("Batch", "AWS::Batch::JobDefinition").values()
    }


def test_batch_job_definition_asks_for_a_gpu(synthesised: Synthesised) -> None:
    jobs = _job_definitions(synthesised)
    assert sorted(jobs) == sorted(STEP_NAMES)
    gpu = [r for r in jobs["predict"]["ContainerProperties"]["ResourceRequirements"] if r["Type"] == "GPU"]
    assert gpu == [{"Type": "GPU", "Value": "1"}]
    for name in ("vectorize", "rules", "products", "publish"):
        types = {r["Type"] for r in jobs[name]["ContainerProperties"]["ResourceRequirements"]}
        assert "GPU" not in types, name


def test_batch_jobs_retry_and_run_ocsge(synthesised: Synthesised) -> None:
    for name, job in _job_definitions(synthesised).items():
        strategy = job["RetryStrategy"]
        assert strategy["Attempts"] >= 2
        reasons = {(e["Action"], e.get("OnStatusReason") or e.get("OnExitCode")) for e in strategy["EvaluateOnExit"]}
        assert ("RETRY", "Host EC2*") in reasons  # spot reclaim
        assert ("EXIT", "2") in reasons  # ocsge usage error: not retried
        command = job["ContainerProperties"]["Command"]
        assert command[0] == name  # the image's entrypoint is `ocsge`
        assert job["Timeout"]["AttemptDurationSeconds"] > 0
        env = {e["Name"]: e["Value"] for e in job["ContainerProperties"]["Environment"]}
        assert env["OCSGE_STORAGE_ROOT"] == f"s3://{synthesised.context['data_bucket']}/data"
        assert env["OCSGE_PUBLIC_URL"] == synthesised.context["public_url"]
        # publish writes asset hrefs under the same base the services serve
        assert env["OCSGE_ASSET_BASE_URL"] == synthesised.context["public_url"] + "/data"
        assert "OCSGE_CATALOG_ROOT" not in env
    predict = _job_definitions(synthesised)["predict"]["ContainerProperties"]["Command"]
    assert predict == ["predict", "--departement", "Ref::departement", "--millesime", "Ref::millesime"]


def test_gpu_compute_environment_follows_the_context(synthesised: Synthesised) -> None:
    envs = synthesised.resources("Batch", "AWS::Batch::ComputeEnvironment")
    gpu = [e["Properties"]["ComputeResources"] for e in envs.values()
           if "g5.xlarge" in e["Properties"]["ComputeResources"].get("InstanceTypes", [])]
    assert len(gpu) == 1
    assert gpu[0]["InstanceTypes"] == ["g5.xlarge", "g4dn.2xlarge", "g6"]
    assert gpu[0]["Type"] == "EC2"  # on-demand in this context (SPOT otherwise)
    assert gpu[0]["MinvCpus"] == 0
    assert gpu[0]["Ec2Configuration"][0]["ImageType"] == "ECS_AL2_NVIDIA"


def test_publish_step_reads_the_pgstac_password_from_secrets_manager(synthesised: Synthesised) -> None:
    publish = _job_definitions(synthesised)["publish"]["ContainerProperties"]
    env = {e["Name"]: e["Value"] for e in publish["Environment"]}
    assert env["OCSGE_CATALOG_BACKEND"] == "pgstac"
    assert ":password" not in json.dumps(env) and "PGPASSWORD" not in env
    (secret,) = publish["Secrets"]
    assert secret["Name"] == "PGPASSWORD"


# --- Step Functions -------------------------------------------------------------------------------------------


def _definitions(synthesised: Synthesised) -> dict[str, dict[str, Any]]:
    out = {}
    for machine in synthesised.resources("Pipeline", "AWS::StepFunctions::StateMachine").values():
        parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
        text = "".join(p if isinstance(p, str) else "REF" for p in parts)  # references sit inside strings
        out[machine["Properties"]["StateMachineName"]] = json.loads(text)
    return out


def test_one_state_machine_per_departement(synthesised: Synthesised) -> None:
    assert sorted(_definitions(synthesised)) == sorted(
        f"ocsge-test-{token}" for token in ("D077", "D02A", "D971", "DS01")
    )


def test_state_machine_has_the_five_steps_with_retries(synthesised: Synthesised) -> None:
    for name, definition in _definitions(synthesised).items():
        states = definition["States"]
        tasks = {k: v for k, v in states.items() if v["Type"] == "Task" and "batch:submitJob" in v["Resource"]}
        assert {k for k in tasks} == {"PredictArray", "PredictOne", "Vectorize", "VectorizeMap", "VectorizeReduce",
                                      "VectorizePolygons", "VectorizeAssemble", "Rules", "Products", "Publish"}
        for state in tasks.values():
            assert state["Resource"].endswith("batch:submitJob.sync")  # waits for the job
            errors = {e for retry in state["Retry"] for e in retry["ErrorEquals"]}
            assert "States.TaskFailed" in errors and "Batch.AWSBatchException" in errors
            assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"]
            failed = states[state["Catch"][0]["Next"]]
            assert states[failed["Next"]]["Resource"].endswith("sns:publish")  # notify, then Fail
            assert states[states[failed["Next"]]["Next"]]["Type"] == "Fail"
        # Order: predict → vectorize → rules → products → publish → done
        assert tasks["PredictArray"]["Next"] == tasks["PredictOne"]["Next"] == "VectorizeBlocks"
        assert [tasks[s]["Next"] for s in ("Vectorize", "Rules", "Products", "Publish")] == [
            "Rules", "Products", "Publish", "Done"
        ]
        # vectorize: one job for one block, else map (array) → reduce → polygons (array) → assemble → rules
        choice = states["VectorizeBlocks"]
        assert choice["Choices"][0]["NumericGreaterThan"] == 1
        assert (choice["Choices"][0]["Next"], choice["Default"]) == ("VectorizeMap", "Vectorize")
        chain = ["VectorizeMap", "VectorizeReduce", "VectorizePolygons", "VectorizeAssemble", "Rules"]
        assert [tasks[s]["Next"] for s in chain[:-1]] == chain[1:]
        assert tasks["PredictArray"]["Parameters"]["ArrayProperties"] == {"Size.$": "$.blocks"}
        assert "ArrayProperties" not in tasks["PredictOne"]["Parameters"]
        departement = states["Arguments"]["Parameters"]["departement"]
        assert name.endswith(departement.rjust(3, "0"))


def test_state_machine_resumes_at_any_step(synthesised: Synthesised) -> None:
    definition = next(iter(_definitions(synthesised).values()))
    resume = definition["States"]["StartAt"]
    assert {c["StringEquals"]: c["Next"] for c in resume["Choices"]} == {
        "predict": "PredictBlocks", "vectorize": "VectorizeBlocks", "rules": "Rules", "products": "Products",
        "publish": "Publish",
    }
    assert definition["States"][resume["Default"]]["Type"] == "Fail"
    # start_at defaults to predict, blocks to 1
    assert definition["States"]["DefaultStartAt"]["Result"] == "predict"
    assert definition["States"]["DefaultBlocks"]["Result"] == 1


def test_vectorize_map_reduce_jobs_run_the_stage_options(synthesised: Synthesised) -> None:
    """The four vectorise jobs share the step's job definition; each adds its stage's options, the map
    jobs are arrays over the blocks (one child per block: ``each``) with a one-block memory."""
    definition = next(iter(_definitions(synthesised).values()))
    states = definition["States"]
    base = ["vectorize", "--departement", "Ref::departement", "--millesime", "Ref::millesime"]
    expected = {
        "VectorizeMap": ["--map-block", "each"],
        "VectorizeReduce": ["--reduce"],
        "VectorizePolygons": ["--polygons-block", "each"],
        "VectorizeAssemble": ["--assemble"],
    }
    definition_arn = states["Vectorize"]["Parameters"]["JobDefinition"]
    for name, options in expected.items():
        params = states[name]["Parameters"]
        assert params["JobDefinition"] == definition_arn
        assert params["ContainerOverrides"]["Command"] == base + options
        array = name in ("VectorizeMap", "VectorizePolygons")
        assert ("ArrayProperties" in params) == array
        if array:
            assert params["ArrayProperties"] == {"Size.$": "$.blocks"}
            resources = {r["Type"]: r["Value"] for r in params["ContainerOverrides"]["ResourceRequirements"]}
            assert resources == {"VCPU": "1", "MEMORY": "4096"}
    assert "ContainerOverrides" not in states["Vectorize"]["Parameters"]  # one block: the one-process verb


def test_a_full_pipeline_stack_fits_in_a_template(synthesised: Synthesised) -> None:
    """``-c departements=all`` (101) spans stacks of MACHINES_PER_STACK state machines, each template under
    CloudFormation's 1 MB (as written by CDK, indented) and 500 resources."""
    from infra.pipeline import MACHINES_PER_STACK

    template = synthesised.templates["Pipeline"]
    machines = synthesised.resources("Pipeline", "AWS::StepFunctions::StateMachine")
    per_machine = max(len(json.dumps(m, indent=1)) for m in machines.values())
    estimate = len(json.dumps(template, indent=1)) + (MACHINES_PER_STACK - len(machines)) * per_machine
    assert estimate < 900_000, estimate
    assert len(template["Resources"]) + MACHINES_PER_STACK - len(machines) < 500


# --- Lambdas and HTTP API ------------------------------------------------------------------------------------


def _functions(synthesised: Synthesised) -> dict[str, dict[str, Any]]:
    return {
        v["Properties"]["FunctionName"].rsplit("-", 1)[-1]: v["Properties"]
        for v in synthesised.resources("Services", "AWS::Lambda::Function").values()
    }


def test_one_container_lambda_per_service(synthesised: Synthesised) -> None:
    functions = _functions(synthesised)
    assert sorted(functions) == sorted(spec.name for spec in SERVICES)
    for spec in SERVICES:
        fn = functions[spec.name]
        assert fn["PackageType"] == "Image"
        assert fn["ImageConfig"]["Command"] == [HANDLERS[spec.name]]
        assert fn["MemorySize"] == spec.memory_mb and fn["Timeout"] == spec.timeout_s <= 29
        env = fn["Environment"]["Variables"]
        for key, value in GDAL_ENV.items():
            assert env[key] == value
        assert env["OCSGE_STORAGE_ROOT"] == f"s3://{synthesised.context['data_bucket']}/data"
        assert env["OCSGE_PUBLIC_URL"] == synthesised.context["public_url"]
        assert "OCSGE_CATALOG_ROOT" not in env  # no setting that nothing reads
        assert env[TRUST_FORWARDED_ENV] == "1"  # behind CloudFront, which writes X-Forwarded-Host itself


def _stac_environment(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (stac,) = [r["Properties"] for r in templates["Services"]["Resources"].values()
               if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["FunctionName"].endswith("-stac")]
    return stac["Environment"]["Variables"]


def test_stac_asset_hrefs_point_at_cloudfront_with_a_public_url(synthesised: Synthesised) -> None:
    env = _stac_environment(synthesised.templates)
    assert env["OCSGE_ASSET_BASE_URL"] == "https://ocsge.example.org/data"


def test_stac_asset_hrefs_are_a_path_without_a_public_url(tmp_path: Path) -> None:
    """First deployment, before the CloudFront domain is known: the base is the path /{data_prefix}, which the
    STAC service resolves against the host serving each request (services/stac/client.py); the publish step
    gets the same base."""
    from infra.app import synth

    assembly = synth({"data_bucket": "ocsge-first-data", "data_prefix": "v1/data",
                      "services_image": "ocsge/services:1", "batch_image": "ocsge/batch:1"}, outdir=tmp_path)
    templates = {s.stack_name.rsplit("-", 1)[-1]: json.loads(Path(assembly.directory, s.template_file).read_text())
                 for s in assembly.stacks}
    env = _stac_environment(templates)
    assert env["OCSGE_ASSET_BASE_URL"] == "/v1/data" and "OCSGE_PUBLIC_URL" not in env
    # without the database profile there is no consolidation store: no function, no route, no behaviour
    names = [r["Properties"]["FunctionName"] for r in templates["Services"]["Resources"].values()
             if r["Type"] == "AWS::Lambda::Function"]
    assert names and not any(n.endswith("-consolidation") for n in names)
    (dist,) = [r for r in templates["Storage"]["Resources"].values() if r["Type"] == "AWS::CloudFront::Distribution"]
    patterns = [b["PathPattern"] for b in dist["Properties"]["DistributionConfig"]["CacheBehaviors"]]
    assert "/consolidation/*" not in patterns and "/stac/*" in patterns
    (publish,) = [r["Properties"] for r in templates["Batch"]["Resources"].values()
                  if r["Type"] == "AWS::Batch::JobDefinition"
                  and r["Properties"]["JobDefinitionName"].endswith("-publish")]
    batch_env = {e["Name"]: e["Value"] for e in publish["ContainerProperties"]["Environment"]}
    assert batch_env["OCSGE_ASSET_BASE_URL"] == "/v1/data"


def test_handler_paths_are_the_agreed_ones() -> None:
    assert HANDLERS == {
        "stac": "services.handlers.stac.handler",
        "tiles": "services.handlers.tiles.handler",
        "vector": "services.handlers.vector.handler",
        "downloads": "services.handlers.downloads.handler",
        "viewer": "services.handlers.viewer.handler",
        "consolidation": "services.handlers.consolidation.handler",
    }


def test_catalogue_lambdas_reach_pgstac_through_the_proxy(synthesised: Synthesised) -> None:
    functions = _functions(synthesised)
    for spec in SERVICES:
        fn = functions[spec.name]
        env = fn["Environment"]["Variables"]
        if spec.uses_catalog:
            assert env["OCSGE_CATALOG_BACKEND"] == "pgstac" and fn["VpcConfig"]["SubnetIds"]
            dsn = json.dumps(env["OCSGE_PGSTAC_DSN"])
            assert "sslmode=require" in dsn and "password" not in dsn
            assert env["OCSGE_PGSTAC_SECRET_ARN"]
        elif spec.uses_store:  # the consolidation store: its own user, password from its secret, OIDC issuer
            assert fn["VpcConfig"]["SubnetIds"] and env["OCSGE_CATALOG_BACKEND"] == "embedded"
            dsn = json.dumps(env["OCSGE_CONSOLIDATION_DSN"])
            assert "ocsge_consolidation@" in dsn and "sslmode=require" in dsn and "password" not in dsn
            assert env["OCSGE_CONSOLIDATION_DSN_SECRET_ARN"]
            assert env["OCSGE_CONSOLIDATION_OIDC_ISSUER"] and env["OCSGE_CONSOLIDATION_OIDC_AUDIENCE"]
            assert env["OCSGE_CONSOLIDATION_COOKIE_SECURE"] == "1"
        else:
            assert env["OCSGE_CATALOG_BACKEND"] == "embedded" and "VpcConfig" not in fn


def test_http_api_routes_and_cors(synthesised: Synthesised) -> None:
    routes = {
        v["Properties"]["RouteKey"] for v in synthesised.resources("Services", "AWS::ApiGatewayV2::Route").values()
    }
    for spec in SERVICES:
        for path in spec.routes:
            for method in spec.methods:
                assert f"{method} {path}" in routes
    assert "$default" in routes
    assert not any(r.split()[0] in ("PUT", "PATCH", "DELETE", "ANY") for r in routes if r != "$default")
    (api,) = synthesised.resources("Services", "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "HTTP"
    assert api["Properties"]["CorsConfiguration"]["AllowOrigins"] == ["*"]


# --- IAM --------------------------------------------------------------------------------------------------------


def _statements(synthesised: Synthesised) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for part, template in synthesised.templates.items():
        for logical_id, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            docs = []
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                docs.append(props["PolicyDocument"])
            if resource["Type"] == "AWS::IAM::Role":
                docs.extend(p["PolicyDocument"] for p in props.get("Policies", []))
            if resource["Type"] in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy"):
                docs.append(props["PolicyDocument"])
            for doc in docs:
                for statement in doc["Statement"]:
                    out.append((part, logical_id, statement))
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_everything_on_everything(synthesised: Synthesised) -> None:
    statements = _statements(synthesised)
    assert len(statements) > 20
    for part, logical_id, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        actions = _as_list(statement.get("Action", []))
        resources = _as_list(statement.get("Resource", []))
        assert not ("*" in actions and "*" in resources), f"{part}/{logical_id}: {statement}"
        assert not any(a.endswith(":*") and "*" in resources for a in actions), f"{part}/{logical_id}: {statement}"
    for _part, _id, role in synthesised.all_resources("AWS::IAM::Role"):
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "AdministratorAccess" not in json.dumps(arn) and "FullAccess" not in json.dumps(arn)


def _role_statements(synthesised: Synthesised, part: str, role_logical_id: str) -> list[dict[str, Any]]:
    out = []
    for resource in synthesised.resources(part, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in resource["Properties"]["Roles"]:
            out.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return out


def _s3_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in _as_list(s["Action"]) if a.startswith("s3:")}


def test_services_only_read_s3(synthesised: Synthesised) -> None:
    roles = [k for k in synthesised.resources("Services", "AWS::IAM::Role")]
    assert len(roles) == len(SERVICES)
    for role in roles:
        assert _s3_actions(_role_statements(synthesised, "Services", role)) == {"s3:GetObject", "s3:ListBucket"}


def test_batch_writes_only_its_prefix(synthesised: Synthesised) -> None:
    """Every step, publish included, writes only {data_prefix}/* (the catalogue is {data_prefix}/stac/)."""
    roles = synthesised.resources("Batch", "AWS::IAM::Role")
    job_roles = [k for k in roles if k.startswith("WorkerRole")]
    assert len(job_roles) == 1
    writes = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    written = []
    for statement in _role_statements(synthesised, "Batch", job_roles[0]):
        if writes & set(_as_list(statement["Action"])):
            written.extend(json.dumps(resource) for resource in _as_list(statement["Resource"]))
    assert len(written) == 1 and written[0].endswith(f':::{synthesised.context["data_bucket"]}/data/*"]]}}'), written
    for job in _job_definitions(synthesised).values():
        assert job["ContainerProperties"]["JobRoleArn"]["Fn::GetAtt"][0] == job_roles[0]


# --- pgstac profile ---------------------------------------------------------------------------------------------


def test_pgstac_profile(synthesised: Synthesised) -> None:
    pgstac = synthesised.assertions["Pgstac"]
    pgstac.has_resource_properties("AWS::RDS::DBInstance", {
        "Engine": "postgres", "PubliclyAccessible": False, "StorageEncrypted": True,
    })
    pgstac.has_resource_properties("AWS::RDS::DBProxy", {"RequireTLS": True, "EngineFamily": "POSTGRESQL"})
    pgstac.resource_count_is("AWS::SecretsManager::Secret", 4)  # admin, reader, ingest, consolidation store
    pgstac.has_resource_properties("Custom::PgstacMigration", {"pgstac_version": "0.10.0", "database": "pgstac"})


# --- container images staged at synth (never built) ---------------------------------------------------------------


def _asset_dirs(synthesised: Synthesised) -> dict[str, Path]:
    out = {}
    for manifest in synthesised.directory.glob("*.assets.json"):
        for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values():
            source = asset["source"]
            out[source.get("dockerFile", "Dockerfile")] = synthesised.directory / source["directory"]
    return out


def test_images_are_staged_with_only_their_code(synthesised: Synthesised) -> None:
    assets = _asset_dirs(synthesised)
    services, batch = assets["services/Dockerfile"], assets["inference_batch/Dockerfile"]
    assert sorted(p.name for p in services.iterdir()) == ["README.md", "catalog", "ocsge", "pyproject.toml",
                                                           "services"]
    assert sorted(p.name for p in batch.iterdir()) == ["README.md", "catalog", "inference_batch", "ocsge",
                                                        "pyproject.toml"]
    for root in (services, batch):
        assert not list(root.rglob("__pycache__")) and not list(root.rglob("node_modules"))
    assert "Dockerfile" in assets  # the pgstac migration image (its own folder)


def test_every_step_has_a_job_definition() -> None:
    assert tuple(step.name for step in STEPS) == STEP_NAMES


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_step_commands_match_the_verbs(step) -> None:  # type: ignore[no-untyped-def]
    """Every option a job definition passes exists on its ``ocsge`` verb (the verbs are written elsewhere)."""
    import click

    from ocsge.cli import cli

    command = cli.get_command(click.Context(cli), step.command[0])
    assert command is not None, f"no ocsge verb {step.command[0]!r}"
    assert not (command.help or "").startswith("(unavailable"), command.help
    options = {opt for param in command.params for opt in param.opts}
    for arg in step.command[1:]:
        if arg.startswith("-"):
            assert arg in options, f"ocsge {step.command[0]} has no option {arg} (has {sorted(options)})"


def test_cdk_json_runs_this_app() -> None:
    cdk_json = json.loads((Path(__file__).resolve().parents[2] / "infra" / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"
