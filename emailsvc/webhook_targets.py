"""Where an outbound webhook may connect: resolve the host once, vet every address, pin the connection to them.

An API key chooses the URL, so without this the worker would reach (and, through the deliveries list,
read) services inside the operator's network. Checking a name and then letting the HTTP client resolve
it again would let a DNS answer change in between (rebinding), so the connection goes to the very
addresses that were checked, while the Host header, SNI and the certificate check keep the name.
"""

import http.client
import ipaddress
import socket
import ssl
import urllib.parse

# IPv6 forms that only carry an IPv4 address. Mapped and compatible addresses never appear on the wire,
# Teredo tunnels to an address hidden in its bits and the local-use NAT64 prefix is a site's own:
# none is a public receiver, so they are refused outright.
REFUSED_V6 = {
    ipaddress.ip_network("::ffff:0:0/96"): "an IPv4-mapped address",
    ipaddress.ip_network("::/96"): "an IPv4-compatible address",
    ipaddress.ip_network("2001::/32"): "a Teredo address",
    ipaddress.ip_network("64:ff9b:1::/48"): "a local-use NAT64 address",
}
# IPv6 forms that route to the IPv4 address inside them (DNS64 networks answer NAT64 for every
# IPv4-only host, so refusing them all would refuse most receivers there): judged by that address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class TargetRefused(Exception):
    """The URL must not be contacted; the message says why."""


def non_public(address):
    """Return why `address` (an ipaddress object) is not a public unicast address, or None when it is."""
    if address.version == 6:
        for network, reason in REFUSED_V6.items():
            if address in network and not (address.is_loopback or address.is_unspecified):
                return reason
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = non_public(inner)
            return why and f"wraps the IPv4 address {inner}, {why}"
    for reason in ("loopback", "unspecified", "multicast", "link_local", "private", "reserved"):
        if getattr(address, f"is_{reason}"):
            return reason.replace("_", "-")
    if not address.is_global:  # shared address space (100.64.0.0/10) and the rest of IANA's special list
        return "not globally routable"
    return None


def _embedded_ipv4(address):
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in SIX_TO_FOUR:
        return address.sixtofour
    return None


def resolve(host, port):
    """Return the addresses `host` resolves to for TCP (a literal address resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))


class Target:
    """A URL taken apart, with the addresses its host resolved to once."""

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise TargetRefused("the port is not a number from 0 to 65535") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetRefused("not an http or https URL with a host")
        try:
            # The ASCII form once, for the look-up, the Host header and the certificate check alike.
            self.host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise TargetRefused("the host name is not a valid domain name") from exc
        self.https = parts.scheme == "https"
        self.port = port or (443 if self.https else 80)
        self.path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self.addresses = []

    def resolve(self, allow_private=False):
        """Resolve the host once; unless `allow_private`, raise TargetRefused when any answer is not public."""
        name = self.host.rstrip(".").lower()
        if not allow_private and (name == "localhost" or name.endswith(".localhost")):
            raise TargetRefused(f"{self.host} is a non-public address (a localhost name)")
        try:
            self.addresses = resolve(self.host, self.port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"{self.host} does not resolve ({exc})") from exc
        if not self.addresses:
            raise TargetRefused(f"{self.host} does not resolve")
        for text in self.addresses if not allow_private else ():
            why = non_public(ipaddress.ip_address(text))
            if why:
                raise TargetRefused(f"{self.host} resolves to the non-public address {text} ({why})")
        return self

    def connection(self, timeout):
        """Return an unopened HTTP(S) connection that will connect only to the vetted addresses."""
        if self.https:
            return PinnedHTTPSConnection(self.host, self.port, self.addresses, timeout, ssl.create_default_context())
        return PinnedHTTPConnection(self.host, self.port, self.addresses, timeout)


def vet_url(url, allow_private=False):
    """Return the Target of `url`, resolved and checked; raise TargetRefused when it must not be contacted."""
    return Target(url).resolve(allow_private)


class PinnedHTTPConnection(http.client.HTTPConnection):
    """http.client's connection, named for `host` (the Host header) but connected to the vetted `addresses`."""

    def __init__(self, host, port, addresses, timeout):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self):
        error = None
        for address in self.addresses:  # in the resolver's order, as socket.create_connection would try them
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
                return
            except OSError as exc:
                error = exc
        raise error


class PinnedHTTPSConnection(PinnedHTTPConnection):
    """The same over TLS: SNI and the certificate check use the host name, never the address."""

    default_port = 443

    def __init__(self, host, port, addresses, timeout, context):
        super().__init__(host, port, addresses, timeout)
        self.context = context

    def connect(self):
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
