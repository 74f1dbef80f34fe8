"""The transfer client's address policy: what it refuses, and that it refuses before any byte."""

from __future__ import annotations

import ipaddress

import pytest

from storage.errors import UrlForbidden
from storage.httpio import AddressPolicy
from storage.retry import RetryPolicy
from storage.transfer import fetch, new_client, upload
from tests.job.test_trainer_defences import SHA, canary_server

FORBIDDEN = [
    "127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert not AddressPolicy().permits(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().permits(ipaddress.ip_address(address))


def test_allowed_networks_open_exactly_their_range() -> None:
    policy = AddressPolicy(["127.0.0.0/8", "::1/128"])
    assert policy.permits(ipaddress.ip_address("127.0.0.2"))
    assert policy.permits(ipaddress.ip_address("::ffff:127.0.0.2"))  # mapped, judged as IPv4
    assert policy.permits(ipaddress.ip_address("::1"))
    assert not policy.permits(ipaddress.ip_address("10.0.0.1"))
    with pytest.raises(ValueError):
        AddressPolicy(["not-a-network"])


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost", "[::ffff:127.0.0.2]"])
async def test_a_policed_client_sends_nothing_to_a_forbidden_host(host: str) -> None:
    with canary_server("127.0.0.2") as canary:
        url = f"http://{host}:{canary.port}/object?X-Amz-Signature=s3cr3t"
        async with new_client(policy=AddressPolicy(["10.0.0.0/8"])) as client:
            with pytest.raises(UrlForbidden) as info:
                await fetch(url, sha256=SHA, max_bytes=10, client=client)
            with pytest.raises(UrlForbidden):
                await upload(url, b"x", content_type="a/b", client=client, retry=RetryPolicy(1))
        assert canary.hits == []
    assert info.value.reason == "url_forbidden"
    assert "s3cr3t" not in str(info.value)


async def test_the_policy_is_checked_on_every_connection_not_once_per_client() -> None:
    with canary_server("127.0.0.2") as canary:
        policy = AddressPolicy(["127.0.0.0/8"])
        async with new_client(policy=policy) as client:
            await client.get(canary.url("/first"))
            # What a rebinding DNS answer amounts to: the same client, a new decision.
            policy.allow = ()
            await client.aclose()
        async with new_client(policy=policy) as client:
            with pytest.raises(UrlForbidden):
                await fetch(canary.url("/second"), sha256=SHA, max_bytes=10, client=client)
    assert canary.hits == ["/first"]
