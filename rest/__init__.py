"""The REST API: aiohttp handlers (one module per resource), error mapping, OpenAPI."""
