"""Which addresses a webhook may reach, and which URLs may be subscribed."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.exceptions import ValidationError

from webhooks import addresses


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "224.0.0.1",
        "0.0.0.0",  # noqa: S104 (an address checked, not bound)
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not addresses.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert addresses.is_public(ipaddress.ip_address(address))


def test_a_name_that_resolves_to_loopback_is_refused(settings):
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(addresses.Refused, match="non-public"):
        addresses.resolve("http://localhost:9/hook")


def test_loopback_is_allowed_when_the_setting_is_on(settings):
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = True
    target = addresses.resolve("http://127.0.0.1:9/hook")
    assert str(target.address) == "127.0.0.1"
    assert target.port == 9


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "not a url",
        "http://user:pass@example.com/hook",
        "http://127.0.0.1/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest",
    ],
)
def test_urls_that_may_not_be_subscribed(settings, url):
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError):
        addresses.validate_url(url)


def test_a_public_name_may_be_subscribed(settings):
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = False
    assert addresses.validate_url(" https://hooks.example.com/x ") == "https://hooks.example.com/x"
