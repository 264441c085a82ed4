"""Check JSON requests and responses against CVAT's OpenAPI schema (../shared/data/cvat/schema.yml).

OpenAPI 3.0 schemas are JSON Schema draft 4 plus ``nullable``; ``nullable: true`` is rewritten
as ``anyOf [schema, null]`` and every component is validated with jsonschema's Draft4Validator.
Where CVAT's own answers differ from its schema (``SCHEMA_FIXES``), the schema is corrected to what
CVAT sends.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

# (component, property) -> the schema CVAT really follows
SCHEMA_FIXES = {
    # a delivery keeps the receiver's answer as text ("" when over 1 MiB); the schema says object
    ("WebhookDeliveryRead", "response"): {"type": "string"},
}


def _convert(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _convert(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_convert(v) for v in node]
    return node


class OpenApiChecker:
    """Finds the operation of (method, path) and validates bodies against its schemas."""

    def __init__(self, schema_path: Path):
        self.spec = yaml.load(
            schema_path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
        self.components = _convert(self.spec["components"])
        for (component, prop), fixed in SCHEMA_FIXES.items():
            self.components["schemas"][component]["properties"][prop] = fixed
        self.version = self.spec["info"]["version"]
        self._routes = []
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template.rstrip("/")) + "/?$"
            self._routes.append((re.compile(pattern), template, item))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """(path template, operation object) of a request; KeyError when CVAT has no such endpoint."""
        for pattern, template, item in self._routes:
            if pattern.match(path) and method.lower() in item:
                return template, item[method.lower()]
        raise KeyError(f"{method} {path} is not an endpoint of CVAT's API")

    @staticmethod
    def _json_schema(content: dict[str, Any] | None) -> dict[str, Any] | None:
        for content_type, body in (content or {}).items():
            if "json" in content_type and "schema" in body:
                return body["schema"]
        return None

    def _errors(self, schema: dict[str, Any] | None, instance: Any) -> list[str]:
        if schema is None:
            return []
        import jsonschema

        root = {**_convert(copy.deepcopy(schema)), "components": self.components}
        validator = jsonschema.Draft4Validator(root)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
            for e in validator.iter_errors(instance)
        ]

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Schema violations of a JSON response (empty when it conforms)."""
        template, op = self.operation(method, path)
        response = op["responses"].get(str(status))
        if response is None:
            documented = ", ".join(op["responses"])
            return [f"{method} {template}: status {status} is not documented (documented: {documented})"]
        return [
            f"{method} {template} -> {status}: {e}"
            for e in self._errors(self._json_schema(response.get("content")), body)
        ]

    def check_request(self, method: str, path: str, body: Any) -> list[str]:
        """Schema violations of a JSON request body."""
        template, op = self.operation(method, path)
        schema = self._json_schema(op.get("requestBody", {}).get("content"))
        return [f"{method} {template} request: {e}" for e in self._errors(schema, body)]


@lru_cache(maxsize=2)
def load_checker(schema_path: str) -> OpenApiChecker:
    """One checker per schema file and process."""
    return OpenApiChecker(Path(schema_path))
