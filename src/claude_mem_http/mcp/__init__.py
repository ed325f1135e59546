"""The MCP server: its tools (:mod:`.server`), on stdio as ``claude-mem mcp``
(:mod:`.stdio`) and mounted at ``/mcp`` of the aiohttp app (:mod:`.streamable_http`)."""
