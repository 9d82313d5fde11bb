from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from studio.config import Secret, Settings

KEY = "sk-live-very-secret-value"


def test_settings_read_the_environment_when_no_argument_is_given():
    settings = Settings.from_env(
        {
            "RUNAPI_API_KEY": KEY,
            "RUNAPI_BASE_URL": "https://example.test/v1",
            "KONTEXT_STUDIO_HOME": "/tmp/ks",
            "KONTEXT_STUDIO_HOSTED": "true",
        }
    )
    assert settings.api_key is not None
    assert settings.api_key.reveal() == KEY
    assert settings.base_url == "https://example.test/v1"
    assert settings.home == Path("/tmp/ks")
    assert settings.hosted is True


def test_arguments_win_over_the_environment_when_both_are_given():
    settings = Settings.from_env({"KONTEXT_STUDIO_HOME": "/tmp/a"}, home=Path("/tmp/b"), port=9000)
    assert settings.home == Path("/tmp/b")
    assert settings.port == 9000


def test_a_blank_key_counts_as_no_key():
    assert Settings.from_env({"RUNAPI_API_KEY": "   "}).api_key is None


def test_the_key_never_shows_in_str_repr_or_pickle():
    settings = Settings.from_env({"RUNAPI_API_KEY": KEY})
    assert KEY not in repr(settings)
    assert KEY not in str(settings.api_key)
    assert KEY not in f"{settings.api_key!r} {settings.api_key}"
    with pytest.raises(TypeError):
        pickle.dumps(Secret(KEY))


def test_unknown_override_is_refused():
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_env({}, colour="blue")
