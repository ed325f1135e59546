"""claude-mem over HTTP, and the clients of it.

* :mod:`claude_mem_http.server`: the aiohttp server (``claude-mem serve``): the app, its
  routes, authentication, middlewares, health and how it is served.
* :mod:`claude_mem_http.wire`: what travels over HTTP: the JSON request and response
  shapes, and the OpenAPI document that describes them.
* :mod:`claude_mem_http.client`: what runs beside the agent: the typed HTTP client, the
  Claude Code hooks and their spool, the installer, transcript import, and the local and
  remote backends they write through.
* :mod:`claude_mem_http.mcp`: the MCP server, on stdio and mounted at ``/mcp``.

Importing this package imports none of them.
"""
