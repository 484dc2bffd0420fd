"""scraping routes."""

from __future__ import annotations

from rest.openapi import RouteTable

routes = RouteTable("scraping")
