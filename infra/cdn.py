"""CloudFront in front of everything public: the services (HTTP API origin) and the buckets (origin
access control), with cache policies per kind of response.

| path | origin | cache |
|---|---|---|
| ``/tiles/*``, ``/vector/*`` | HTTP API | ``tiles``: 1 day default, up to a year, whole query string |
| ``/wmts*``, ``/wms*`` | HTTP API | ``ogc``: as tiles, on the query string normalised at the edge (edge_query) |
| ``/stac/*``, ``/downloads/*``, ``/stats/*``, ``/`` | HTTP API | ``api``: 1 minute default, up to an hour |
| ``/{data_prefix}/stac/*`` | data bucket | ``api``: the published catalogue, so a republication shows within a minute |
| ``/{data_prefix}/*`` | data bucket | managed CachingOptimized (COG/PMTiles range reads, archives) |

Origins honour ``Cache-Control`` within those bounds. The services build links from the host a request
was made to: every API behaviour runs a viewer-request function that sets ``X-Forwarded-Host`` to the
viewer's ``Host`` (overwriting what a client sent) and removes any client ``Forwarded`` and
``X-Forwarded-Port`` (infra.edge_query), and the three API cache policies key on ``X-Forwarded-Host``, so
an answer built for one host name is never served for another and no client header reaches the origin
that the cache key does not cover. Cache policies are an account-wide quota of 20
(not adjustable), so there are three, shared by the behaviours. CORS is answered by a response
headers policy (any origin, GET/HEAD/OPTIONS/POST, range headers exposed) so that MapLibre, OpenLayers
and pmtiles.js can read tiles and files from any site.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudfront as cf
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import InfraConfig
from infra.edge_query import FORWARDED_HOST_HEADER, forward_host_function_code, ogc_function_code
from infra.services import deployed_services

CACHE_KINDS = ("tiles", "ogc", "api")


class Cdn(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        api_domain: str,
        data_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        env = config.env_name
        long_lived = {"default_ttl": Duration.days(1), "max_ttl": Duration.days(365), "min_ttl": Duration.seconds(0)}
        # Links in API answers (STAC, TileJSON, capabilities) name the host the viewer asked: key on it. The
        # viewer-request functions write this header from the viewer's Host before the cache is looked up.
        by_host = cf.CacheHeaderBehavior.allow_list(FORWARDED_HOST_HEADER)
        self.cache_policies: dict[str, cf.ICachePolicy] = {
            # authenticated answers (consolidation): never stored at the edge; with caching disabled the
            # all-viewer origin request policy forwards Authorization and the session cookie
            "private": cf.CachePolicy.CACHING_DISABLED,
            "tiles": cf.CachePolicy(
                self, "TilesCache", cache_policy_name=f"ocsge-{env}-tiles",
                comment="XYZ raster and vector tiles: long TTL, every query parameter",
                query_string_behavior=cf.CacheQueryStringBehavior.all(), header_behavior=by_host, **long_lived,
                enable_accept_encoding_gzip=True, enable_accept_encoding_brotli=True,
            ),
            "ogc": cf.CachePolicy(
                self, "OgcCache", cache_policy_name=f"ocsge-{env}-ogc",
                comment="WMTS/WMS KVP: the query string is normalised by a viewer-request function first",
                query_string_behavior=cf.CacheQueryStringBehavior.all(), header_behavior=by_host, **long_lived,
                enable_accept_encoding_gzip=True, enable_accept_encoding_brotli=True,
            ),
            "api": cf.CachePolicy(
                self, "ApiCache", cache_policy_name=f"ocsge-{env}-api",
                comment="STAC, downloads, stats, viewer: short TTL",
                query_string_behavior=cf.CacheQueryStringBehavior.all(), header_behavior=by_host,
                default_ttl=Duration.minutes(1), max_ttl=Duration.hours(1), min_ttl=Duration.seconds(0),
                enable_accept_encoding_gzip=True, enable_accept_encoding_brotli=True,
            ),
        }
        self.ogc_function = cf.Function(
            self, "OgcQuery", code=cf.FunctionCode.from_inline(ogc_function_code()),
            runtime=cf.FunctionRuntime.JS_2_0,
            comment="WMTS/WMS: canonical upper-case allow-listed keys, sorted; forwarding headers",
        )
        self.host_function = cf.Function(
            self, "ForwardHost", code=cf.FunctionCode.from_inline(forward_host_function_code()),
            runtime=cf.FunctionRuntime.JS_2_0,
            comment="X-Forwarded-Host from the viewer's Host; client Forwarded/X-Forwarded-Port removed",
        )
        self.cors = cf.ResponseHeadersPolicy(
            self, "Cors", response_headers_policy_name=f"ocsge-{env}-cors",
            cors_behavior=cf.ResponseHeadersCorsBehavior(
                access_control_allow_origins=["*"],
                access_control_allow_methods=["GET", "HEAD", "OPTIONS", "POST"],
                access_control_allow_headers=["*"],
                access_control_expose_headers=["ETag", "Content-Length", "Content-Range", "Accept-Ranges", "Link"],
                access_control_allow_credentials=False,
                access_control_max_age=Duration.days(1),
                origin_override=False,
            ),
            security_headers_behavior=cf.ResponseSecurityHeadersBehavior(
                content_type_options=cf.ResponseHeadersContentTypeOptions(override=True),
                strict_transport_security=cf.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
            ),
        )

        api_origin = origins.HttpOrigin(
            api_domain,
            protocol_policy=cf.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cf.OriginSslPolicy.TLS_V1_2],
            read_timeout=Duration.seconds(30),
        )

        def api_behaviour(kind: str, methods: cf.AllowedMethods) -> cf.BehaviorOptions:
            function = self.ogc_function if kind == "ogc" else self.host_function
            return cf.BehaviorOptions(
                origin=api_origin,
                viewer_protocol_policy=cf.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=methods,
                cached_methods=cf.CachedMethods.CACHE_GET_HEAD_OPTIONS,
                cache_policy=self.cache_policies[kind],
                # The HTTP API answers only to its own host name: forward everything else.
                origin_request_policy=cf.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                response_headers_policy=self.cors,
                compress=True,
                function_associations=[
                    cf.FunctionAssociation(function=function, event_type=cf.FunctionEventType.VIEWER_REQUEST)
                ],
            )

        # One origin (and one origin access control) for both bucket behaviours.
        data_origin = origins.S3BucketOrigin.with_origin_access_control(
            data_bucket, origin_access_levels=[cf.AccessLevel.READ]
        )

        def bucket_behaviour(cache_policy: cf.ICachePolicy, keyed_by_host: bool = False) -> cf.BehaviorOptions:
            # A cache policy that keys on X-Forwarded-Host gets it from the function, never from the client
            # (which could otherwise split the cache at will).
            functions = [cf.FunctionAssociation(function=self.host_function,
                                                event_type=cf.FunctionEventType.VIEWER_REQUEST)]
            return cf.BehaviorOptions(
                origin=data_origin,
                viewer_protocol_policy=cf.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cf.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
                cached_methods=cf.CachedMethods.CACHE_GET_HEAD_OPTIONS,
                cache_policy=cache_policy,
                origin_request_policy=cf.OriginRequestPolicy.CORS_S3_ORIGIN,
                response_headers_policy=self.cors,
                compress=True,
                function_associations=functions if keyed_by_host else None,
            )

        behaviours: dict[str, cf.BehaviorOptions] = {}
        for spec in deployed_services(config.pgstac):
            methods = (cf.AllowedMethods.ALLOW_ALL if "POST" in spec.methods
                       else cf.AllowedMethods.ALLOW_GET_HEAD_OPTIONS)
            for pattern, kind in spec.cloudfront:
                behaviours[pattern] = api_behaviour(kind, methods)
        # Order matters (first match wins): the catalogue before the rest of the data prefix. The static
        # catalogue and the snapshot are rewritten in place by `ocsge publish`: a short TTL.
        behaviours[f"/{config.stac_prefix}/*"] = bucket_behaviour(self.cache_policies["api"], keyed_by_host=True)
        behaviours[f"/{config.data_prefix}/*"] = bucket_behaviour(cf.CachePolicy.CACHING_OPTIMIZED)

        self.distribution = cf.Distribution(
            self,
            "Distribution",
            comment=f"OCS GE {env}: services and downloads",
            default_behavior=api_behaviour("api", cf.AllowedMethods.ALLOW_GET_HEAD_OPTIONS),
            additional_behaviors=behaviours,
            price_class=cf.PriceClass.PRICE_CLASS_100,  # Europe and North America edges: France first
            http_version=cf.HttpVersion.HTTP2_AND_3,
            enable_ipv6=True,
        )
