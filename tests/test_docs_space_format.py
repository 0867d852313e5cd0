"""docs/space-format.md documents every key the schema accepts, with its range and default; the
key lists come from the schema's own registries, so a new key without docs fails here."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from lknas import limits
from lknas.space.configs import OBJECTIVE_MODES, SearchConfig, TrainConfig
from lknas.space.domains import DOMAIN_EXTRA_KEYS, DOMAIN_KEYS
from lknas.space.loader import read_yaml
from lknas.space.resolve import KEY_NEEDS
from lknas.space.schema import TOP_KEYS, parse_space, schema_fields

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "space-format.md").read_text()
ROWS: dict[str, list[str]] = {}  # key -> its table rows (top-level and conditional tables repeat some)
for _m in re.finditer(r"^\| `([^`]+)` \|.*$", DOC, re.MULTILINE):
    ROWS.setdefault(_m.group(1), []).append(_m.group(0))


def yaml_text(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def test_the_readme_links_it():
    assert "(docs/space-format.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", sorted(schema_fields()))
def test_every_key_has_a_row_with_its_valid_values(path):
    assert path in ROWS, f"docs/space-format.md has no table row for `{path}`"
    valid = schema_fields()[path].valid
    assert any(valid in row for row in ROWS[path]), (path, valid)


def test_every_top_level_key_is_documented():
    assert not [key for key in TOP_KEYS if key not in ROWS]


def test_every_domain_key_is_documented():
    keys = set(DOMAIN_KEYS) | {k for extra in DOMAIN_EXTRA_KEYS.values() for k in extra}
    assert not [key for key in keys if f"`{key}`" not in DOC]


@pytest.mark.parametrize("key", sorted(KEY_NEEDS))
def test_every_conditional_rule_is_documented(key):
    switch, values = KEY_NEEDS[key]
    rows = [line for line in DOC.splitlines() if line.startswith(f"| `{key}` | {switch} is")]
    assert len(rows) == 1 and all(v in rows[0] for v in values), (key, rows)


@pytest.mark.parametrize("section, config", [("train", TrainConfig), ("search", SearchConfig)])
def test_defaults_match_the_dataclasses(section, config):
    for field in dataclasses.fields(config):
        if field.name == "objectives":
            continue
        (row,) = ROWS[f"{section}.{field.name}"]
        assert f"`{yaml_text(field.default)}`" in row, (section, field.name)


def test_every_objective_and_its_default_mode():
    for name, mode in OBJECTIVE_MODES.items():
        assert ROWS[name] == [row for row in ROWS[name] if row.startswith(f"| `{name}` | {mode} |")] != []


def test_the_limits_are_the_enforced_ones():
    for text in (f"{limits.MAX_FILE_BYTES // 1024} kB", f"{limits.MAX_INT_DIGITS} digits",
                 f"{limits.MAX_NESTING} levels", f"{limits.MAX_NODES:,} values", f"{limits.MAX_STAGES} stages",
                 f"{limits.MAX_CHOICES:,} values", f"{limits.MAX_GRID:,}", f"{limits.MAX_PROBLEMS} problems",
                 f"{limits.DEFAULT_MAX_MODEL_GB:g} GB", limits.MODEL_GB_ENV):
        assert text in DOC, text


def test_the_main_example_is_the_bundled_peleK_space():
    from lknas.space import load_space

    block = DOC.split("```yaml\n", 1)[1].split("```", 1)[0]
    example = parse_space(read_yaml(block), "doc.yaml")
    bundled = load_space("peleK_space.yaml")
    assert [(d.name, d.domain, d.conditional) for d in example.dimensions] == \
        [(d.name, d.domain, d.conditional) for d in bundled.dimensions]
    assert (example.train, example.search, example.constraints) == (bundled.train, bundled.search, bundled.constraints)
    assert f"{len(bundled.dimensions)} dimensions" in DOC and f"{bundled.size()[0]:,} combinations" in DOC
