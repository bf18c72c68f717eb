"""The node's HTTP API (Starlette) and its OpenAPI document. At the edge: never imported by
the pure cores."""

from consortia.api.app import create_app

__all__ = ["create_app"]
