from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from studio.config import Secret, Settings, SettingsError

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


# Hosted mode: one switch, on by itself wherever others can reach the studio.

PASSWORD = "pw-canary-7c1e"


@pytest.mark.parametrize(
    ("environ", "arguments", "hosted"),
    [
        pytest.param({}, {}, False, id="default-loopback"),
        pytest.param({}, {"host": "localhost"}, False, id="localhost"),
        pytest.param({}, {"host": "127.0.0.5"}, False, id="other-loopback"),
        pytest.param({}, {"host": "::1"}, False, id="ipv6-loopback"),
        pytest.param({}, {"host": "0.0.0.0"}, True, id="all-interfaces"),
        pytest.param({}, {"host": "::"}, True, id="all-interfaces-v6"),
        pytest.param({}, {"host": "192.168.1.20"}, True, id="lan-address"),
        pytest.param({}, {"host": "studio.example"}, True, id="a-name"),
        pytest.param({}, {"share": True}, True, id="share"),
        pytest.param({"SPACE_ID": "me/studio"}, {}, True, id="space"),
        pytest.param({"KONTEXT_STUDIO_HOSTED": "1"}, {}, True, id="env-on"),
        pytest.param({}, {"hosted": True}, True, id="flag-on"),
        pytest.param({"KONTEXT_STUDIO_HOSTED": "0"}, {"host": "0.0.0.0"}, False, id="env-off"),
        pytest.param({"KONTEXT_STUDIO_HOSTED": "0"}, {"hosted": True}, True, id="flag-wins"),
    ],
)
def test_hosted_mode_is_on_wherever_others_can_reach_the_studio(environ, arguments, hosted):
    assert Settings.from_env(environ, **arguments).hosted is hosted


def test_turning_hosted_mode_off_where_others_can_reach_it_is_a_warning(caplog):
    settings = Settings.from_env({"KONTEXT_STUDIO_HOSTED": "0"}, share=True)
    assert settings.hosted is False
    [record] = [r for r in caplog.records if r.name == "studio.config"]
    assert record.levelname == "WARNING"
    assert "KONTEXT_STUDIO_HOSTED=0" in record.getMessage()
    assert "--share" in record.getMessage()


def test_turning_hosted_mode_off_on_loopback_needs_no_warning(caplog):
    assert Settings.from_env({"KONTEXT_STUDIO_HOSTED": "0"}).hosted is False
    assert [r for r in caplog.records if r.name == "studio.config"] == []


def test_on_a_space_the_studio_listens_where_the_space_sends_visitors():
    settings = Settings.from_env({"SPACE_ID": "me/studio"})
    assert settings.space
    assert settings.host == "0.0.0.0"
    assert settings.port == 7860


def test_logins_come_from_the_environment_or_the_arguments_and_never_show():
    from_env = Settings.from_env({"KONTEXT_STUDIO_AUTH": f"alice:{PASSWORD}, bob:a:b:c"})
    assert [(user, secret.reveal()) for user, secret in from_env.auth] == [
        ("alice", PASSWORD),
        ("bob", "a:b:c"),
    ]
    from_args = Settings.from_env(
        {"KONTEXT_STUDIO_AUTH": "carol:x"}, auth=[f"dave:{PASSWORD},with,commas"]
    )
    assert [(u, s.reveal()) for u, s in from_args.auth] == [("dave", f"{PASSWORD},with,commas")]
    assert PASSWORD not in repr(from_env)
    assert PASSWORD not in repr(from_args)


@pytest.mark.parametrize(
    ("environ", "arguments"),
    [
        pytest.param({"KONTEXT_STUDIO_AUTH": PASSWORD}, {}, id="env-no-colon"),
        pytest.param({"KONTEXT_STUDIO_AUTH": f":{PASSWORD}"}, {}, id="env-no-user"),
        pytest.param({}, {"auth": ["alice:"]}, id="arg-no-password"),
        pytest.param({}, {"auth": [PASSWORD]}, id="arg-no-colon"),
    ],
)
def test_a_bad_login_is_one_sentence_without_the_password(environ, arguments):
    with pytest.raises(SettingsError, match="USER:PASSWORD") as refused:
        Settings.from_env(environ, **arguments)
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param(None, "", id="none"),
        pytest.param("/studio/", "/studio", id="trailing-slash"),
        pytest.param("https://example.com/studio", "https://example.com/studio", id="full-url"),
    ],
)
def test_the_root_path_for_a_proxy(given, kept):
    assert Settings.from_env({}, root_path=given).root_path == kept


def test_a_root_path_that_is_not_a_path_is_refused():
    with pytest.raises(SettingsError, match="must start with /"):
        Settings.from_env({}, root_path="studio")


def test_a_number_setting_that_is_not_a_number_is_one_sentence():
    with pytest.raises(SettingsError, match="KONTEXT_STUDIO_POLL_SCALE"):
        Settings.from_env({"KONTEXT_STUDIO_POLL_SCALE": "fast"})


def test_the_door_settings_come_from_the_environment_and_a_space_trusts_its_proxy():
    settings = Settings.from_env(
        {
            "SPACE_ID": "someone/studio",
            "KONTEXT_STUDIO_SECRET": "host-secret",
            "KONTEXT_STUDIO_FRAME_ANCESTORS": "https://a.example https://b.example",
            "KONTEXT_STUDIO_ADDRESS_BUDGET_CENTS": "40",
        }
    )
    assert settings.proxy_hops == 1
    assert settings.visitor_secret == Secret("host-secret")
    assert "host-secret" not in repr(settings)
    assert settings.frame_ancestors == ("https://a.example", "https://b.example")
    assert settings.address_budget_cents == 40
    assert Settings.from_env({}).proxy_hops == 0  # nobody's X-Forwarded-For is believed


def test_the_studios_event_pace_is_a_setting_of_one_event_a_second_at_least():
    assert Settings.from_env({}).events_per_s == 48
    assert Settings.from_env({"KONTEXT_STUDIO_EVENTS_PER_S": "96"}).events_per_s == 96
    for bad in ("0", "-4"):
        with pytest.raises(SettingsError, match="KONTEXT_STUDIO_EVENTS_PER_S must be 1 or more"):
            Settings.from_env({"KONTEXT_STUDIO_EVENTS_PER_S": bad})


def test_a_data_folder_given_relative_is_made_absolute(tmp_path, monkeypatch):
    """Files are linked from other folders (Download's named copies): a relative home pointed
    nowhere from there (UX audit 10)."""
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}, home=Path("data/a")).home == tmp_path / "data" / "a"
    assert Settings.from_env({"KONTEXT_STUDIO_HOME": "b"}).home == tmp_path / "b"
