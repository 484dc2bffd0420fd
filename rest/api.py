"""Path prefixes."""

API = "/api/v1"
PWA = "/pwa/api/v1"
