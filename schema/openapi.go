package schema

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the HTTP API, served at
// /v2/openapi.json. The producer's tests validate every request the API
// accepts and every response it gives against it, so it cannot drift from
// the code.
//
//go:embed openapi.json
var OpenAPI []byte
