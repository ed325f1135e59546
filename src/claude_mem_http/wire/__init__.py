"""What travels over HTTP: the request parsing (:mod:`.schemas`), the response shapes as
wire classes (:mod:`.models`, :mod:`.bodies`) with the one converter between them and JSON
(:mod:`.converter`), and the OpenAPI document that describes every route (:mod:`.openapi`,
its response schemas generated from the classes). The server answers with them, the client
decodes with them, and the client's local backend answers in the same shapes."""
