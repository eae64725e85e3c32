"""Standalone mode: the OpenFaaS system API and `/function/{name}` served from the functions file.

This lets any HTTP service act as a function, so the queue worker and the connectors can run
against ferry alone, without an OpenFaaS installation.
"""

from __future__ import annotations

from aiohttp import web

from gateway.functions import DEFAULT_NAMESPACE, FunctionCatalog
from gateway.proxy import ReverseProxy


class StandaloneRoutes:
    def __init__(self, catalog: FunctionCatalog, proxy: ReverseProxy) -> None:
        self.catalog = catalog
        self.proxy = proxy

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/system/functions", self.list_functions),
            web.get("/system/function/{name}", self.describe_function),
            web.get("/system/namespaces", self.list_namespaces),
            web.get("/healthz", self.healthz),
            web.route("*", "/function/{name}", self.invoke),
            web.route("*", "/function/{name}/{tail:.*}", self.invoke),
        ]

    async def list_functions(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace") or DEFAULT_NAMESPACE
        listed = self.catalog.current.in_namespace(namespace)
        return web.json_response([fn.openfaas_json() for fn in listed])

    async def describe_function(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        namespace = request.query.get("namespace")
        function = await self.catalog.lookup(f"{name}.{namespace}" if namespace else name)
        if function is None:
            return web.Response(status=404, text=f"function {name} not found\n")
        return web.json_response(function.openfaas_json())

    async def list_namespaces(self, _: web.Request) -> web.Response:
        return web.json_response(self.catalog.current.namespaces())

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
        return await self.proxy.forward(request, target + mark + query)
