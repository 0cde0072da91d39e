"""Signed ready links: what a poller without a function key may read, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from arr_core.api.signed_links import LINK_SECONDS, check, sign, signed_path
from arr_core.errors import LinkRefused, Misconfigured
from arr_core.services.settings import AppSettings

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
KEY, OLD, OTHER = "n" * 40, "o" * 40, "x" * 40
PATH = signed_path("s-1")


def test_a_signed_link_passes_until_it_expires() -> None:
    params = sign([KEY], PATH, NOW)
    assert int(params["expires"]) == NOW.timestamp() + LINK_SECONDS
    check([KEY], PATH, params["expires"], params["signature"], NOW)
    check([KEY], PATH, params["expires"], params["signature"], NOW + timedelta(seconds=LINK_SECONDS))
    with pytest.raises(LinkRefused):
        check([KEY], PATH, params["expires"], params["signature"], NOW + timedelta(seconds=LINK_SECONDS + 1))


def test_rotation_the_first_key_signs_and_every_key_verifies() -> None:
    old_link = sign([OLD], PATH, NOW)
    check([KEY, OLD], PATH, old_link["expires"], old_link["signature"], NOW)
    new_link = sign([KEY, OLD], PATH, NOW)
    assert new_link == sign([KEY], PATH, NOW)
    with pytest.raises(LinkRefused):  # once the old key is dropped, its links stop
        check([KEY], PATH, old_link["expires"], old_link["signature"], NOW)


@pytest.mark.parametrize("change", ["other session", "later expiry", "other key", "no signature", "no expiry",
                                    "no keys", "far future", "not a number", "one character"])
def test_a_changed_or_foreign_link_is_refused(change: str) -> None:
    params = sign([KEY], PATH, NOW)
    path, expires, signature, keys = PATH, params["expires"], params["signature"], [KEY]
    if change == "other session":
        path = signed_path("s-2")
    elif change == "later expiry":
        expires = str(int(expires) + 60)
    elif change == "other key":
        keys = [OTHER]
    elif change == "no signature":
        signature = None
    elif change == "no expiry":
        expires = None
    elif change == "no keys":
        keys = []
    elif change == "far future":  # signed by the key, but for longer than the app ever signs
        expires = str(int(NOW.timestamp()) + 10 * LINK_SECONDS)
        signature = sign([KEY], PATH, NOW + timedelta(seconds=9 * LINK_SECONDS))["signature"]
    elif change == "not a number":
        expires = "1e10"
    elif change == "one character":
        signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(LinkRefused) as refused:
        check(keys, path, expires, signature, NOW)
    assert KEY not in str(refused.value) and (signature or "~") not in str(refused.value)


def test_the_setting_takes_several_keys_and_refuses_short_ones() -> None:
    settings = AppSettings.from_env({"ARR_LINK_SIGNING_KEY": f" {KEY}  {OLD},{OTHER} "})
    assert settings.link_signing_keys == (KEY, OLD, OTHER)
    assert AppSettings.from_env({}).link_signing_keys == ()
    assert KEY not in repr(settings)
    with pytest.raises(Misconfigured, match="ARR_LINK_SIGNING_KEY") as short:
        AppSettings.from_env({"ARR_LINK_SIGNING_KEY": f"{KEY} short-key"})
    assert "short-key" not in str(short.value)
