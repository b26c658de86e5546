"""The official volcengine SDK's URL-authentication calls against our API: update_auth_key,
describe_auth, generate_push_url, generate_play_url (request shapes as the SDK sends them)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.interop.test_official_sdk import _ok, _sdk_error, live_service

from liverelay.api.testing import SEED_DOMAINS, BackgroundApi
from liverelay.urlauth import url_signature

PUSH_KEYS = {
    "Vhost": "push.example.com",
    "SceneType": "push",
    "AuthDetailList": [
        {"SecretKey": "primary123", "EncryptionAlgorithm": "md5"},
        {"SecretKey": "backup456", "EncryptionAlgorithm": "md5"},
    ],
    "ValidDuration": 3600,
    "PushPullEnable": True,
}


def test_update_then_describe_round_trip(api: BackgroundApi) -> None:
    service = live_service(api)
    _ok(service.create_domain_v2(SEED_DOMAINS))
    assert _ok(service.update_auth_key(PUSH_KEYS)) == {}
    # Per Domain and per App as well: the pull config of app "live" through the pull domain.
    pull = {
        "Domain": "pull.example.com",
        "App": "live",
        "SceneType": "pull",
        "AuthDetailList": [{"SecretKey": "pullkey", "EncryptionAlgorithm": "hmac_sha256"}],
    }
    _ok(service.update_auth_key(pull))

    described = _ok(service.describe_auth({"Vhost": "push.example.com", "SceneType": "push"}))
    assert described == {
        "AuthList": [
            {
                "Vhost": "push.example.com",
                "Domain": "",
                "App": "",
                "SceneType": "push",
                "AuthStatus": True,
                "AuthDetailList": PUSH_KEYS["AuthDetailList"],
                "ValidDuration": 3600,
            }
        ]
    }
    by_domain = _ok(service.describe_auth({"Domain": "pull.example.com", "App": "live"}))["AuthList"]
    assert [
        (a["Domain"], a["App"], a["SceneType"], a["AuthStatus"], a["ValidDuration"]) for a in by_domain
    ] == [
        ("pull.example.com", "live", "pull", False, 604800)  # PushPullEnable defaults to false
    ]
    # UpdateAuthKey is a full update: the second call replaces the key list.
    _ok(service.update_auth_key({**PUSH_KEYS, "AuthDetailList": PUSH_KEYS["AuthDetailList"][1:]}))
    [row] = _ok(service.describe_auth({"Vhost": "push.example.com", "SceneType": "push"}))["AuthList"]
    assert row["AuthDetailList"] == [{"SecretKey": "backup456", "EncryptionAlgorithm": "md5"}]
    stored = api.call(api.store.list_url_auth("push.example.com"))
    assert {(c.app, c.scene) for c in stored} == {("", "push"), ("live", "pull")}


def test_generate_urls_are_signed_with_the_first_key(api: BackgroundApi) -> None:
    service = live_service(api)
    _ok(service.create_domain_v2(SEED_DOMAINS))
    _ok(service.update_auth_key(PUSH_KEYS))
    before = int(time.time())
    result = _ok(service.generate_push_url({"Vhost": "push.example.com", "App": "live", "Stream": "s1"}))
    [url] = result["PushURLList"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == ("rtmp", "push.example.com", "/live/s1")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expires = int(query["volcTime"])
    assert before + 3600 <= expires <= int(time.time()) + 3600  # the config's ValidDuration
    assert query["volcSecret"] == url_signature("md5", "live", "s1", "primary123", query["volcTime"])
    assert result["AuthType"] == "TypeB"
    [detail] = result["PushURLListDetail"]
    assert detail["DomainApp"] + "/" + detail["StreamSign"] == url

    # ExpiredTime wins over ValidDuration.
    fixed = _ok(
        service.generate_push_url(
            {
                "Vhost": "push.example.com",
                "App": "live",
                "Stream": "s1",
                "ValidDuration": 60,
                "ExpiredTime": "2099-01-01T08:00:00+08:00",
            }
        )
    )
    assert fixed["ExpiredTime"] == "2099-01-01T00:00:00Z"
    assert "volcTime=4070908800" in fixed["PushURLList"][0]

    # No pull key: unsigned play URLs for RTMP, HTTP-FLV and HLS of the pull domain.
    play = _ok(service.generate_play_url({"Domain": "pull.example.com", "App": "live", "Stream": "s1"}))
    assert play["AuthType"] == ""
    assert sorted(u["Protocol"] for u in play["URLList"]) == ["flv", "hls", "rtmp"]
    for item in play["URLList"]:
        assert "volcSecret" not in item["URL"] and urlsplit(item["URL"]).hostname == "pull.example.com"


def test_refusals_use_the_envelope(api: BackgroundApi) -> None:
    service = live_service(api)
    _ok(service.create_domain_v2(SEED_DOMAINS))
    cases = [
        ({**PUSH_KEYS, "Domain": "push.example.com"}, "InvalidParam"),  # both Vhost and Domain
        ({**PUSH_KEYS, "SceneType": "both"}, "InvalidParam.OutOfRange"),
        ({**PUSH_KEYS, "ValidDuration": 59}, "InvalidParam.OutOfRange"),
        (
            {**PUSH_KEYS, "AuthDetailList": [{"SecretKey": "k", "EncryptionAlgorithm": "md5_custom"}]},
            "InvalidParam.OutOfRange",
        ),
        (
            {
                **PUSH_KEYS,
                "AuthDetailList": [{"SecretKey": f"k{i}", "EncryptionAlgorithm": "md5"} for i in range(3)],
            },
            "InvalidParam",
        ),
        (
            {**PUSH_KEYS, "AuthDetailList": [{"SecretKey": "no spaces", "EncryptionAlgorithm": "md5"}]},
            "InvalidParam",
        ),
    ]
    for body, code in cases:
        with pytest.raises(Exception) as info:
            service.update_auth_key(body)
        assert _sdk_error(info.value)["Code"] == code, body
    with pytest.raises(Exception) as info:
        service.update_auth_key(
            {**{k: v for k, v in PUSH_KEYS.items() if k != "Vhost"}, "Domain": "nope.example"}
        )
    assert _sdk_error(info.value)["Code"] == "RequestForbidden"
    with pytest.raises(Exception) as info:
        service.generate_push_url(
            {"Vhost": "push.example.com", "App": "live", "Stream": "s", "ExpiredTime": "2001-01-01T00:00:00Z"}
        )
    assert _sdk_error(info.value)["Code"] == "InvalidParam"
    with pytest.raises(Exception) as info:  # the Domain is written into the URLs: a host name only
        service.generate_play_url({"Domain": "evil.example/x?y=", "App": "live", "Stream": "s"})
    assert _sdk_error(info.value)["Code"] == "InvalidParam"
    assert api.call(api.store.list_url_auth()) == []
