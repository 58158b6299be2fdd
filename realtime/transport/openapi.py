"""The OpenAPI document, generated from the REST route table (realtime/transport/rest.py)."""

from __future__ import annotations

from typing import Any

import msgspec

# Path parameters that are not numeric ids (attachments: transport/uploads.py).
STRING_PARAMS = frozenset({"upload_id", "variant"})


def openapi_document(api: list[Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a route table (``rest.API``)."""
    paths: dict[str, dict[str, Any]] = {}
    bodies = [e.body for e in api if e.body is not None]
    _defs, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    for e in api:
        op: dict[str, Any] = {
            "summary": e.summary,
            "operationId": e.handler.__name__,
            "responses": {
                "200": {"description": "ok"},
                "4XX": {
                    "description": "an error with a stable code",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        params = [p.strip("{}") for p in e.path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string" if p in STRING_PARAMS else "integer"},
                }
                for p in params
            ]
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{e.body.__name__}"}
                    }
                },
            }
        if e.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = op
    components["Error"] = {
        "type": "object",
        "properties": {
            "ok": {"const": False},
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Homeroom API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
