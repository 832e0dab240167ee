"""summary.json has a schema: the pydantic model `SweepSummary`, and docs/summary.schema.json
generated from it (`pytest tests/test_summary_schema.py --update-goldens` rewrites the file)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from calibrate.report.summary_json import SweepSummary, schema_text

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "summary.schema.json"


def test_committed_schema_is_the_one_generated_from_the_model(
    request: pytest.FixtureRequest,
) -> None:
    text = schema_text()
    if request.config.getoption("--update-goldens"):
        SCHEMA.write_text(text, encoding="utf-8")
    assert SCHEMA.read_text(encoding="utf-8") == text, (
        "docs/summary.schema.json is stale: run pytest tests/test_summary_schema.py --update-goldens"
    )


def test_schema_is_a_valid_json_schema_that_rejects_unknown_keys() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == list(SweepSummary.model_fields)


def check_summary(path: Path) -> None:
    """A written summary.json validates against the committed schema and the model, and the model
    writes it back byte for byte."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    jsonschema.validate(data, json.loads(SCHEMA.read_text(encoding="utf-8")))
    model = SweepSummary.model_validate(data)
    assert json.dumps(model.model_dump(mode="python"), indent=2) + "\n" == text
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "surprise": 1}, json.loads(SCHEMA.read_text(encoding="utf-8")))
