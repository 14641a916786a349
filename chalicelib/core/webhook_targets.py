"""Where a quota's webhook may point: never inside our own network.

A webhook URL is user input that makes the alerts function send a request, so in AWS (whatever
the stage is called: strictness follows ``Settings.in_lambda``) it must not reach the instance metadata address (169.254.169.254), loopback or any other
private, link-local, shared or unspecified address (server-side request forgery). The URL is
checked when a quota is stored (its host may be a literal address in any spelling: dotted,
decimal ``2130706433``, hex ``0x7f000001``, octal, IPv6-mapped) and again when an alert is sent,
on every address the host resolves to then (a name may resolve elsewhere later: DNS rebinding).

Operators with a receiver inside their own network list it in ``WEBHOOK_ALLOWED_NETWORKS``
(CIDRs); an address there is accepted, over plain HTTP too when the URL names it literally.

Run locally (``make run``, tests) loopback and private networks stay reachable, for receivers on
the developer's machine; but link-local addresses (169.254.0.0/16, fe80::/10) and the cloud
instance-metadata services (by address, also inside IPv6 forms, and by name) are never a target,
anywhere, allowed networks or not: a developer's run on a cloud VM would otherwise post to the
VM's credentials. The sender checks what the name resolves to in every mode and pins it.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple, Union
from urllib.parse import urlsplit

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class UnsafeWebhookTarget(ValueError):
    """A webhook URL or address this deployment must not send to."""


# Never a target, not even locally: link-local networks and the metadata services' addresses
# (AWS/Azure/GCP 169.254.169.254 and AWS IPv6 fd00:ec2::254, ECS 169.254.170.2, Alibaba
# 100.100.100.200, Oracle 192.0.0.192) and names.
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def never_a_target(address: Address) -> bool:
    """Link-local or a metadata service, as itself or inside an IPv6 address (mapped, 6to4,
    Teredo, NAT64)."""
    return any(candidate in METADATA_ADDRESSES
               or any(candidate.version == n.version and candidate in n for n in LINK_LOCAL)
               for candidate in {address, _embedded_ipv4(address)})


def metadata_name(host: str) -> bool:
    return host.rstrip(".").lower() in METADATA_NAMES


def literal_address(host: str) -> Optional[Address]:
    """The address a host names literally, in any form a resolver would read it, or None for a name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefABCDEFxX." for c in host):
        try:  # inet_aton reads the legacy forms: 2130706433, 0x7f000001, 0177.0.0.1, 127.1
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, 6to4, Teredo), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded
    return address


def parse_networks(text: Iterable[str]) -> Tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in text if cidr.strip())


@dataclass(frozen=True)
class WebhookTargetPolicy:
    """``strict`` everywhere but a local dev run (never in AWS); ``allowed_networks`` from the
    operator only. Link-local and metadata targets are refused whatever the policy."""

    strict: bool = True
    allowed_networks: Tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings) -> "WebhookTargetPolicy":
        # Settings.local_dev is false whenever the code runs in AWS, whatever STAGE says.
        return cls(strict=not settings.local_dev,
                   allowed_networks=parse_networks(getattr(settings, "webhook_allowed_networks", ())))

    def _allowed(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.allowed_networks)

    def check_address(self, address: Address) -> None:
        if never_a_target(address):
            raise UnsafeWebhookTarget(f"{address} is a link-local or instance-metadata address; "
                                      "webhooks never reach it")
        if not self.strict or self._allowed(address):
            return
        inner = _embedded_ipv4(address)
        if self._allowed(inner):
            return
        for candidate in {address, inner}:
            if not candidate.is_global or candidate.is_multicast or candidate.is_reserved:
                raise UnsafeWebhookTarget(f"{candidate} is a loopback, private, link-local or otherwise "
                                          "internal address; webhooks may only reach public addresses")

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in ("http", "https") or not host:
            raise UnsafeWebhookTarget("a webhook URL must be http(s)://host/...")
        if parts.username is not None or parts.password is not None:
            raise UnsafeWebhookTarget("a webhook URL must not carry credentials")
        if metadata_name(host):
            raise UnsafeWebhookTarget(f"{host} is an instance-metadata service; webhooks never reach it")
        address = literal_address(host)
        if address is not None and never_a_target(address):
            self.check_address(address)
        if not self.strict:
            return
        if address is not None:
            self.check_address(address)
        elif host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
            raise UnsafeWebhookTarget("localhost is not a place webhooks may reach")
        if scheme != "https" and not (address is not None and self._allowed(address)):
            raise UnsafeWebhookTarget("a webhook URL must use https when deployed")


DEV = WebhookTargetPolicy(strict=False)
STRICT = WebhookTargetPolicy(strict=True)
