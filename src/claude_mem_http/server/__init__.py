"""The aiohttp server: ``create_app`` (:mod:`.app`), the routes (:mod:`.routes`),
authentication (:mod:`.auth`), request handling (:mod:`.middlewares`), health
(:mod:`.health`), serving without echoing keys (:mod:`.serving`), the typed app and
request state (:mod:`.state`), and the ``claude-mem serve`` command (:mod:`.cli`)."""
