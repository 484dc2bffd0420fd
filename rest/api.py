"""Path prefixes."""

API = "/api/v1"
