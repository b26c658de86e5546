"""URL authentication, sans-IO: the documented string to sign, signing, and the verifier's decisions.

The Volcengine page "生成直播地址" gives the rule
volcTime={UnixTime}&volcSecret=md5("/{AppName}/{StreamName}{SecretKey}{volcTime}") and a code
sample called as GenAuthUrl("testDomain", "testApp", "testStream", "testKey", 1636963457); it
prints no digest, so the digests below were computed independently with coreutils
(`printf %s ... | md5sum`, `openssl dgst -sha256 -hmac`)."""

from __future__ import annotations

import pytest

from liverelay.store import AuthKeyEntry, ChangeEvent, UrlAuthConfig
from liverelay.urlauth import UrlAuthVerifier, is_loopback_bind, signed_query, string_to_sign, url_signature
from liverelay.urlauth.verifier import EXPIRED, MALFORMED, MISMATCH, MISSING, exposure_warning

DOC_APP, DOC_STREAM, DOC_KEY, DOC_TIME = "testApp", "testStream", "testKey", "1636963457"
NOW = 1_700_000_000


def test_string_to_sign_is_the_documented_concatenation() -> None:
    text = string_to_sign(DOC_APP, DOC_STREAM, DOC_KEY, DOC_TIME)
    assert text.encode() == b"/testApp/testStreamtestKey1636963457"


def test_md5_signature_matches_coreutils() -> None:
    assert url_signature("md5", DOC_APP, DOC_STREAM, DOC_KEY, DOC_TIME) == "55573f1a6dfb5c053e33cf651bb97aa9"


def test_hmac_sha256_extension_matches_openssl() -> None:
    # HMAC-SHA256(key=SecretKey, "/{AppName}/{StreamName}{volcTime}")
    assert (
        url_signature("hmac_sha256", DOC_APP, DOC_STREAM, DOC_KEY, DOC_TIME)
        == "023e4a049f3e0a798f00ba48bd85fc5385c444e2f4c4a26693c6e4c991b32efe"
    )


def test_signed_query_shape() -> None:
    assert (
        signed_query("md5", DOC_APP, DOC_STREAM, DOC_KEY, int(DOC_TIME))
        == "volcTime=1636963457&volcSecret=55573f1a6dfb5c053e33cf651bb97aa9"
    )
    with pytest.raises(ValueError):
        url_signature("md5_custom", "a", "s", "k", "1")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),  # all of 127/8 is loopback
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("", False),  # wildcard
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("example.com", False),  # a name may resolve anywhere
    ],
)
def test_is_loopback_bind(host: str, loopback: bool) -> None:
    assert is_loopback_bind(host) is loopback


def test_exposure_warning_says_how_to_allow() -> None:
    assert exposure_warning("127.0.0.1", False) is None
    assert exposure_warning("0.0.0.0", True) is None
    warning = exposure_warning("0.0.0.0", False)
    assert warning is not None and "media.open_publish = true" in warning and "0.0.0.0" in warning


def _config(app: str = "", scene: str = "push", *keys: str, enabled: bool = True) -> UrlAuthConfig:
    entries = tuple(AuthKeyEntry(k, "md5") for k in keys or ("primary",))
    return UrlAuthConfig("v", app, scene, enabled, 3600, entries, 0, 0)


def _query(key: str, expires: int = NOW + 60, app: str = "live", stream: str = "s") -> str:
    return signed_query("md5", app, stream, key, expires)


def test_verifier_decisions() -> None:
    verifier = UrlAuthVerifier([_config("", "push", "primary", "backup")], clock=lambda: NOW)
    assert verifier.check_publish("v", "live", "s", _query("primary")) is None
    assert verifier.check_publish("v", "live", "s", _query("backup")) is None  # rotation
    assert verifier.check_publish("v", "live", "s", "") is MISSING
    assert verifier.check_publish("v", "live", "s", "volcTime=1") is MISSING
    assert verifier.check_publish("v", "live", "s", "volcTime=x1&volcSecret=00") is MALFORMED
    assert verifier.check_publish("v", "live", "s", _query("primary", NOW - 1)) is EXPIRED
    assert verifier.check_publish("v", "live", "s", _query("wrong")) is MISMATCH
    assert verifier.check_publish("v", "live", "other", _query("primary")) is MISMATCH  # bound to the stream
    doubled = _query("primary") + "&" + _query("primary")
    assert verifier.check_publish("v", "live", "s", doubled) is MISSING  # a parameter given twice
    upper = _query("primary").upper().replace("VOLCTIME", "volcTime").replace("VOLCSECRET", "volcSecret")
    assert verifier.check_publish("v", "live", "s", upper) is None  # hex case does not matter
    # No pull config: playing is open; other vhosts are unaffected.
    assert verifier.check_play("v", "live", "s", "") is None
    assert verifier.check_publish("w", "live", "s", "") is None


def test_app_config_overrides_the_vhost_wide_one_and_disabled_means_off() -> None:
    verifier = UrlAuthVerifier(
        [_config("", "pull", "vhostkey"), _config("live", "pull", "appkey")], clock=lambda: NOW
    )
    assert verifier.check_play("v", "live", "s", _query("appkey")) is None
    assert verifier.check_play("v", "live", "s", _query("vhostkey")) is MISMATCH
    assert verifier.check_play("v", "other", "s", _query("vhostkey", app="other")) is None
    # A change on the bus applies at once: disabling the app's config turns its checks off.
    disabled = _config("live", "pull", "appkey", enabled=False)
    verifier.on_change(ChangeEvent("url_auth", "updated", disabled.key, disabled))
    assert verifier.check_play("v", "live", "s", "") is None
    verifier.on_change(ChangeEvent("url_auth", "deleted", ("v", "", "pull"), None))
    assert verifier.config_for("v", "other", "pull") is None


def test_unsigned_publish_refused_on_a_public_listener_without_a_push_key() -> None:
    guarded = UrlAuthVerifier([], open_publish=False, rtmp_public=True, clock=lambda: NOW)
    refusal = guarded.check_publish("v", "live", "s", "")
    assert refusal is not None and "media.open_publish = true" in refusal.reason
    assert guarded.check_play("v", "live", "s", "") is None  # playing stays open
    assert (
        UrlAuthVerifier([], open_publish=True, rtmp_public=True).check_publish("v", "live", "s", "") is None
    )
    assert (
        UrlAuthVerifier([], open_publish=False, rtmp_public=False).check_publish("v", "live", "s", "") is None
    )
    # With a push key the signature decides, whatever the listener.
    keyed = UrlAuthVerifier([_config()], open_publish=False, rtmp_public=True, clock=lambda: NOW)
    assert keyed.check_publish("v", "live", "s", _query("primary")) is None
