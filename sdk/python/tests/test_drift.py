"""The SDK against api/openapi.yaml: every operation has a method, every
schema a dataclass with the same fields, types and required ones, every
error code an exception class."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import sietch
from sietch import models
from sietch._codec import json_name

YAML = Path(__file__).resolve().parents[3] / "api" / "openapi.yaml"


def bundled() -> dict[str, Any] | None:
    path = os.environ.get("SIETCH_OPENAPI_JSON")
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def operation_ids() -> set[str]:
    doc = bundled()
    if doc is not None:
        return {op["operationId"] for item in doc["paths"].values() for op in item.values() if isinstance(op, dict) and "operationId" in op}
    return set(re.findall(r"^\s+operationId:\s*(\w+)\s*$", YAML.read_text(encoding="utf-8"), re.M))


def test_every_operation_has_a_method():
    ids = operation_ids()
    assert len(ids) > 40, "found too few operationIds: is the document readable?"
    missing = sorted(ids - sietch.OPERATIONS.keys())
    assert not missing, f"operations with no SDK method in OPERATIONS: {missing}"
    unknown = sorted(sietch.OPERATIONS.keys() - ids)
    assert not unknown, f"OPERATIONS names operations the API does not have: {unknown}"


@pytest.mark.parametrize("op,target", sorted(sietch.OPERATIONS.items()))
def test_operation_method_exists(op, target):
    cls_name, _, method = target.partition(".")
    cls = getattr(sietch, cls_name, None)
    assert inspect.isclass(cls), f"{op}: {cls_name} is not a class exported by sietch"
    assert callable(getattr(cls, method, None)), f"{op}: {target} does not exist"


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    doc = bundled()
    if doc is None:
        pytest.skip("SIETCH_OPENAPI_JSON is unset (scripts/sdk-testenv.sh bundles api/openapi.yaml to JSON)")
    s: dict[str, Any] = doc["components"]["schemas"]
    return s


def _want_type(prop: dict[str, Any]) -> Any:
    """The Python type an SDK field for a schema property must have."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return models.SCHEMAS.get(name, str)  # State is a str
    t = prop.get("type")
    if t == "string":
        return {"byte": bytes, "date-time": datetime}.get(prop.get("format", ""), str)
    if t == "array":
        return list[_want_type(prop["items"])]  # type: ignore[misc]
    if t == "object":
        return dict[str, _want_type(prop["additionalProperties"])]  # type: ignore[misc]
    return {"integer": int, "boolean": bool, "number": float}[t]


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return tp, False


def test_every_object_schema_has_a_dataclass(schemas):
    objects = {n for n, s in schemas.items() if s.get("type") == "object"}
    assert objects == set(models.SCHEMAS), "models.SCHEMAS and the document's object schemas differ"


def test_dataclasses_match_schemas(schemas):
    problems: list[str] = []
    for name, cls in models.SCHEMAS.items():
        schema = schemas[name]
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        hints = typing.get_type_hints(cls)
        fields = {json_name(f): f for f in dataclasses.fields(cls)}
        if set(fields) != set(props):
            problems.append(f"{name}: fields {sorted(fields)} != properties {sorted(props)}")
            continue
        for prop, f in fields.items():
            tp, optional = _strip_optional(hints[f.name])
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if prop in required and (optional or has_default):
                problems.append(f"{name}.{prop}: required, but the field is optional")
            if prop not in required and not (optional and f.default is None):
                problems.append(f"{name}.{prop}: optional, but the field is not `X | None = None`")
            want = _want_type(props[prop])
            if tp != want:
                problems.append(f"{name}.{prop}: type {tp} != {want}")
    assert not problems, "\n".join(problems)


def test_state_literal_matches(schemas):
    assert set(typing.get_args(models.State)) == set(schemas["State"]["enum"])


def test_every_error_code_has_a_class(schemas):
    codes = set(schemas["Error"]["properties"]["code"]["enum"])
    assert codes == set(sietch.ERROR_CLASSES)
    for code, cls in sietch.ERROR_CLASSES.items():
        assert cls.code == code and issubclass(cls, sietch.SietchError)
