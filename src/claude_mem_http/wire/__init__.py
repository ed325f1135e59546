"""What travels over HTTP: the request and response shapes (:mod:`.schemas`) and the
OpenAPI document that describes every route (:mod:`.openapi`). The server parses and
answers with them; the client's local backend answers in the same shapes."""
