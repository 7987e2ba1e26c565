"""hakv.core.config: the one TOML writer reads back equal (topology files and app specs)."""

from __future__ import annotations

import tomllib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hakv.core.config import toml_str, toml_value
from hakv.core.ha import AppSpec, parse_app


@given(st.text())
def test_any_string_written_parses_back_equal(text: str) -> None:
    assert tomllib.loads(f"x = {toml_str(text)}")["x"] == text


SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False) | st.text())


@given(st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12))
def test_any_value_written_parses_back_equal(value: Any) -> None:
    assert tomllib.loads(f"x = {toml_value(value)}")["x"] == value


def test_control_characters_use_the_short_escapes() -> None:
    assert toml_str('a"b\\c\n\t\x01\x7f') == '"a\\"b\\\\c\\n\\t\\u0001\\u007F"'


ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: not name.startswith("HAKV_"))


@given(st.text(min_size=1).filter(str.strip), st.dictionaries(ENV_NAMES, st.text(), max_size=3))
def test_an_app_spec_with_any_command_and_env_round_trips(start: str,
                                                          env: dict[str, str]) -> None:
    spec = AppSpec(start=start, env=tuple(env.items()))
    raw = tomllib.loads("\n".join(spec.to_toml_lines("app")))["app"]
    assert parse_app(raw, "group g") == spec
