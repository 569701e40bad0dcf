"""Survey definitions load from config/ and bad ones are refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import CONFIG_DIR
from surveys.definitions import SurveyError, load_survey, load_surveys


def test_demo_security_survey_loads_with_equal_index_weights():
    surveys = load_surveys(CONFIG_DIR / "surveys")
    survey = surveys["security-2026q4"]
    assert survey.anonymous and survey.scale == 5 and survey.scale_labels[0] == "非常不满意"
    weights = survey.index_weights("security")
    assert sorted(weights) == ["q_peace_work", "q_personal_safety", "q_public_order"]
    assert all(abs(w - 1 / 3) < 1e-9 for w in weights.values())


@pytest.mark.parametrize("body, message", [
    ('code="s"\ntitle="t"\nscale=5\nscale_labels=["a","b"]\n[[question]]\ncode="q"\ntext="?"\n', "scale labels"),
    ('code="s"\ntitle="t"\n[[question]]\ncode="q"\ntext="?"\nkind="slider"\n', "unknown kind"),
    ('code="s"\ntitle="t"\n[[question]]\ncode="q"\ntext="?"\n[[question]]\ncode="q"\ntext="!"\n', "duplicate"),
    ('code="s"\ntitle="t"\n', "at least one question"),
    ('code="s"\ntitle="t"\n[[question]]\ncode="q"\ntext="?"\nkind="choice"\n', "no choices"),
])
def test_bad_definitions_are_refused(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(SurveyError, match=message):
        load_survey(path)


async def test_the_embedded_default_serves_the_demo_survey(client):
    from tests.conftest import services_of

    assert "security-2026q4" in services_of(client).surveys
