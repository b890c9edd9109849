"""Settings are declared once; everything else is derived and checked against them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from riverbed.config import SETTINGS, Settings, settings_markdown

DOCS = Path(__file__).parent.parent / "docs" / "settings.md"


def test_the_settings_class_matches_the_declarations() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert fields == {s.name: s.default for s in SETTINGS}


def test_the_docs_list_every_setting() -> None:
    assert DOCS.read_text() == settings_markdown(), (
        "docs/settings.md is stale: regenerate it with "
        "python -c 'from riverbed.config import settings_markdown as m; print(m(), end=\"\")'"
        " > docs/settings.md"
    )


def test_environment_and_overrides() -> None:
    settings = Settings.load(
        {"port": 9000, "host": None},
        environ={
            "RIVERBED_PORT": "1",
            "RIVERBED_HOST": "0.0.0.0",
            "RIVERBED_CHECKPOINT_SECONDS": "2.5",
        },
    )
    assert (settings.port, settings.host, settings.checkpoint_seconds) == (9000, "0.0.0.0", 2.5)


def test_a_bad_environment_value_says_which_variable() -> None:
    with pytest.raises(ValueError, match="RIVERBED_PORT"):
        Settings.load(environ={"RIVERBED_PORT": "eighty"})


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_checkpoint_share_outside_its_range_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="checkpoint_share"):
        Settings.load({"checkpoint_share": share}, environ={})


@pytest.mark.parametrize(
    "given",
    [
        {"postgres_pool_size": 0},
        {"postgres_pool_timeout": 0},
        {"postgres_connect_timeout": -1},
    ],
)
def test_postgres_pool_settings_out_of_range_are_refused(given: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(given))):
        Settings.load(given, environ={})
