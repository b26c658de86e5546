"""sources.base.redact_url / redact_text: what may be shown of a source URL (status, logs, webhooks)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liverelay.sources.base import is_secret_param, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "srt://u:pw@h.example:9000?streamid=live/feed&passphrase=0123456789abc&pbkeylen=16",
            "srt://u:***@h.example:9000?streamid=live/feed&passphrase=***&pbkeylen=16",
        ),
        (
            "http://o.example/live/s.flv?auth_key=1700000000-0-0-abcdef&txSecret=f00&txTime=65&a=b",
            "http://o.example/live/s.flv?auth_key=***&txSecret=***&txTime=65&a=b",
        ),
        (
            "rtmp://o.example:1935/live/s?token=t0k&sign=s1g&volcSecret=v&key=k&secret=x&Auth=y&x=1",
            "rtmp://o.example:1935/live/s?token=***&sign=***&volcSecret=***&key=***&secret=***&Auth=***&x=1",
        ),
        ("rtmp://o.example/live/s", "rtmp://o.example/live/s"),  # nothing secret: unchanged
        ("http://o.example/a.m3u8?token=&x=%20y", "http://o.example/a.m3u8?token=&x=%20y"),
        ("rtmp://user@o.example/live/s", "rtmp://user@o.example/live/s"),  # no password
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_urls_inside_messages() -> None:
    msg = "connect: cannot connect to http://u:p%40ss@127.0.0.1:9/live/s.flv?token=abc&x=1: refused"
    red = redact_text(msg)
    assert "abc" not in red and "p%40ss" not in red
    assert red.startswith("connect: cannot connect to http://u:***@127.0.0.1:9/live/s.flv?token=***")
    assert red.endswith("&x=1: refused")


def test_secret_names() -> None:
    for name in (
        "passphrase",
        "password",
        "pwd",
        "token",
        "access_token",
        "key",
        "auth_key",
        "txSecret",
        "sign",
        "signature",
        "Authorization",
        "credential",
    ):
        assert is_secret_param(name), name
    for name in ("streamid", "latency", "pbkeylen", "mode", "txTime", "a"):
        assert not is_secret_param(name), name


_value = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=20).filter(
    lambda v: all(c not in v for c in "&;#?'\"") and "=" not in v
)


@given(
    secret=_value,
    name=st.sampled_from(["passphrase", "token", "key", "secret", "auth", "sign", "wsSecret", "auth_key"]),
    before=st.lists(st.sampled_from(["a=1", "streamid=live/x", "latency=200"]), max_size=3),
    after=st.lists(st.sampled_from(["b=2", "mode=caller", "pbkeylen=16"]), max_size=3),
    password=_value,
    scheme=st.sampled_from(["srt", "rtmp", "rtmps", "http", "https"]),
)
def test_a_secret_never_survives(
    secret: str, name: str, before: list[str], after: list[str], password: str, scheme: str
) -> None:
    query = "&".join([*before, f"{name}={secret}", *after])
    url = f"{scheme}://user:{quote(password, safe='')}@h.example:1/live/s?{query}"
    red = redact_url(url)
    assert f"{name}={secret}" not in red and f"{name}=***" in red
    assert quote(password, safe="") not in red.split("@")[0]
    for kept in before + after:
        assert kept in red  # the rest stays as it was
    # In free text a value may swallow trailing punctuation (over-masking is the safe side).
    in_text = redact_text(f"error from {url}: boom")
    assert f"{name}={secret}" not in in_text and in_text.startswith(f"error from {red.split(name)[0]}")


@given(st.text(max_size=80))
def test_never_raises(raw: str) -> None:
    assert isinstance(redact_text(raw), str)
