"""Standalone mode: the OpenFaaS system API and `/function/{name}` served from the functions file.

This lets any HTTP service act as a function, so the queue worker and the connectors can run
against ferry alone, without an OpenFaaS installation. The answers have the shapes OpenFaaS
clients read (faas-cli, the connectors, the UI: faas-provider's `FunctionStatus` and
`FunctionNamespace`, the gateway's `GatewayInfo`). What ferry cannot do here (deploy, scale,
secrets, logs, namespace management) answers 501 saying what to do instead, as OpenFaaS CE
answers what it lacks, rather than a bare 404 or 405.
"""

from __future__ import annotations

import platform
from typing import Any

from aiohttp import web

from connectors.core.version import VERSION
from gateway.function_status import FunctionStatus
from gateway.functions import DEFAULT_NAMESPACE, FunctionCatalog
from gateway.proxy import ReverseProxy

_FUNCTIONS_FILE = (
    "functions come from ferry's functions file (functions_file), re-read when it changes"
)
_NOT_HERE = {
    "deploy": f"ferry gateway in standalone mode does not deploy, update or remove functions: "
    f"{_FUNCTIONS_FILE}; to deploy with faas-cli, run ferry in proxy mode (upstream_url) "
    "in front of an OpenFaaS gateway",
    "scale": f"ferry gateway in standalone mode does not scale functions: each is a URL; "
    f"{_FUNCTIONS_FILE}",
    "secrets": "ferry gateway in standalone mode keeps no secrets: give them to the service "
    "behind the function's URL; in proxy mode (upstream_url) secrets go to the OpenFaaS gateway",
    "logs": "ferry gateway in standalone mode does not collect function logs: read them where "
    "the service behind the function's URL runs",
    "namespaces": "ferry gateway in standalone mode does not create, change or delete "
    "namespaces: a function's namespace is its 'namespace:' in the functions file",
}
# Go's names for the machine (runtime.GOARCH), which OpenFaaS's `arch` field carries.
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class StandaloneRoutes:
    def __init__(
        self, catalog: FunctionCatalog, proxy: ReverseProxy, status: FunctionStatus
    ) -> None:
        self.catalog = catalog
        self.proxy = proxy
        self.status = status

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/system/info", self.info),
            web.get("/system/functions", self.list_functions),
            web.get("/system/function/{name}", self.describe_function),
            web.get("/system/namespaces", self.list_namespaces),
            web.get("/system/namespace/{name}", self.get_namespace),
            web.get("/healthz", self.healthz),
            web.route("*", "/function/{name}", self.invoke),
            web.route("*", "/function/{name}/{tail:.*}", self.invoke),
            *_not_here("deploy", "/system/functions", "POST", "PUT", "DELETE"),
            *_not_here("scale", "/system/scale-function/{name}", "POST"),
            *_not_here("secrets", "/system/secrets", "GET", "POST", "PUT", "DELETE"),
            *_not_here("logs", "/system/logs", "GET"),
            *_not_here("namespaces", "/system/namespace", "POST"),
            *_not_here("namespaces", "/system/namespace/", "POST"),
            *_not_here("namespaces", "/system/namespace/{name}", "PUT", "DELETE"),
        ]

    async def info(self, _: web.Request) -> web.Response:
        """`GatewayInfo` as the OpenFaaS gateway answers it; faas-cli reads `provider` and
        `version` (and `provider.version`) without checking them for null."""
        version = {"sha": "", "release": VERSION}
        body: dict[str, Any] = {
            "provider": {"provider": "ferry", "orchestration": "standalone", "version": version},
            "version": version,
            "arch": _GO_ARCH.get(platform.machine().lower(), platform.machine()),
        }
        return web.json_response(body)

    async def list_functions(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace") or DEFAULT_NAMESPACE
        listed = self.catalog.current.in_namespace(namespace)
        return web.json_response([self.status.openfaas_json(fn) for fn in listed])

    async def describe_function(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        namespace = request.query.get("namespace")
        function = await self.catalog.lookup(f"{name}.{namespace}" if namespace else name)
        if function is None:
            return web.Response(status=404, text=f"function {name} not found\n")
        return web.json_response(self.status.openfaas_json(function))

    async def list_namespaces(self, _: web.Request) -> web.Response:
        return web.json_response(self.catalog.current.namespaces())

    async def get_namespace(self, request: web.Request) -> web.Response:
        """A namespace `list_namespaces` shows, as faas-provider's `FunctionNamespace`."""
        name = request.match_info["name"]
        if name not in self.catalog.current.namespaces():
            return web.Response(status=404, text=f"namespace {name} not found\n")
        return web.json_response({"name": name, "annotations": {}, "labels": {}})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        function = await self.catalog.lookup(name)
        if function is None:
            return web.Response(status=404, text=f"function {name} not found\n")
        raw_path, mark, query = request.raw_path.partition("?")
        rest = raw_path.split("/", 3)[3:]  # ['', 'function', name, rest]
        target = function.url + (f"/{rest[0]}" if rest else "")
        try:
            return await self.proxy.forward(request, target + mark + query)
        finally:
            self.status.invoked(function)


def _not_here(what: str, path: str, *methods: str) -> list[web.RouteDef]:
    text = _NOT_HERE[what] + "\n"

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=501, text=text)

    return [web.route(method, path, answer) for method in methods]
