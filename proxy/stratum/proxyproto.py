"""HAProxy PROXY protocol header parser, versions 1 (text) and 2 (binary), sans-IO.

A load balancer in front of the proxy (HAProxy ``send-proxy``/``send-proxy-v2``, nginx
``proxy_protocol on``, AWS NLB) prepends one header to each connection naming the real
client. :class:`ProxyHeaderParser` consumes exactly that header and hands back the bytes
after it, which are the start of the Stratum stream. The layouts follow HAProxy's
``proxy-protocol.txt``.

The parser is strict and refuses garbage as early as the bytes allow: the first byte
already decides between ``PROXY `` (v1) and the v2 signature, and a v2 header's fixed part
is checked before its body is awaited. It never holds more than one v1 line
(:data:`V1_MAX_LINE`) or one v2 header of at most :data:`V2_MAX_PAYLOAD` payload bytes, so
a peer that talks nonsense costs little memory. Every refusal is a
:class:`ProxyHeaderError`, a :class:`~proxy.stratum.errors.FramingError`: the caller closes
the connection.

Only trust a header from a peer that :func:`is_trusted` accepts; anyone else could claim
to be anybody.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from proxy.stratum.errors import FramingError

V1_PREFIX: Final = b"PROXY "
"""Every v1 header starts with these six bytes."""

V1_MAX_LINE: Final = 107
"""The spec's worst case v1 line (TCP6 with two full-length addresses), CRLF included."""

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
"""The twelve bytes opening every v2 header; chosen by the spec to be invalid in any text
protocol, so it cannot be confused with a v1 line or with Stratum."""

V2_FIXED_LEN: Final = 16
"""Signature, version/command byte, family/transport byte and the 16-bit payload length."""

V2_MAX_PAYLOAD: Final = 4096
"""Cap on the v2 payload (addresses plus TLVs). The field allows 65535, but TLVs a
balancer adds (ALPN, authority, SSL details, unique id) fit easily in 4 KiB; a larger
claim is treated as garbage rather than buffered."""

Endpoint: TypeAlias = tuple[str, int]
"""An ``(ip, port)`` pair; IPv4-mapped IPv6 addresses are given in their IPv4 form."""

_V2_VERSION: Final = 0x2
_V2_LOCAL: Final = 0x0
_V2_PROXY: Final = 0x1

_V2_UNSPEC: Final = 0x00
_V2_TCP4: Final = 0x11
_V2_TCP6: Final = 0x21
_V2_UNSUPPORTED: Final = {0x12: "UDP4", 0x22: "UDP6", 0x31: "UNIX stream", 0x32: "UNIX datagram"}
"""Families the spec defines but a TCP Stratum listener cannot use: a UNIX path or a UDP
flow does not fit :class:`ProxyInfo`, and silently treating it as LOCAL would attribute
the client's traffic to the balancer."""

_V4_BLOCK: Final = struct.Struct("!4s4sHH")
_V6_BLOCK: Final = struct.Struct("!16s16sHH")
_V2_FIXED: Final = struct.Struct("!BBH")


class ProxyHeaderError(FramingError):
    """The connection did not open with a valid, supported PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What the header says about the connection.

    Both endpoints are ``None`` when the balancer reports no client (v1 ``UNKNOWN``, v2
    ``LOCAL`` or family ``UNSPEC``): the connection is the balancer's own, e.g. a health
    check, and the socket's peer address is the one to use.
    """

    source: tuple[str, int] | None
    """The real client, as the balancer saw it."""
    destination: tuple[str, int] | None
    """The address the client connected to (the balancer's frontend)."""


_NO_ADDRESSES: Final = ProxyInfo(source=None, destination=None)


class ProxyHeaderParser:
    """Consume one PROXY protocol header (v1 or v2) from the start of a byte stream.

    One parser serves one connection: feed it the first chunks read from the socket until
    :meth:`feed` returns the header and the bytes after it.
    """

    __slots__ = ("_buf", "_done")

    def __init__(self) -> None:
        self._buf = b""
        self._done = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished header currently held."""
        return len(self._buf)

    def feed(self, data: bytes) -> tuple[ProxyInfo, bytes] | None:
        """Consume ``data``; return ``(info, rest)`` once the header is complete.

        ``rest`` holds the bytes that followed the header in the chunks fed so far (the
        start of the Stratum stream, possibly empty). Returns ``None`` while more bytes are
        needed. Raises :class:`ProxyHeaderError` as soon as the bytes cannot be a valid
        header, and :class:`RuntimeError` if fed again after the header was returned.
        """
        if self._done:
            raise RuntimeError("PROXY header already parsed; pass further bytes to the session")
        buf = self._buf + data
        result = _parse(buf)
        if result is None:
            self._buf = buf
            return None
        self._buf = b""
        self._done = True
        return result


def is_trusted(peer_ip: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether ``peer_ip`` (the socket's peer, i.e. the balancer) is in a trusted network.

    An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, as a dual-stack listener reports IPv4
    clients) is matched in both forms, so a configured ``10.0.0.0/8`` covers it. A peer
    that is not an IP address at all (a UNIX socket) is never trusted.
    """
    try:
        addr = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        candidates.append(addr.ipv4_mapped)
    # `in` is simply False across address versions, so no need to pair them up.
    return any(candidate in network for network in networks for candidate in candidates)


def _parse(buf: bytes) -> tuple[ProxyInfo, bytes] | None:
    first = buf[:1]
    if not first:
        return None
    if first == V1_PREFIX[:1]:
        return _parse_v1(buf)
    if first == V2_SIGNATURE[:1]:
        return _parse_v2(buf)
    raise _not_a_header(buf)


def _not_a_header(buf: bytes) -> ProxyHeaderError:
    # A short excerpt names the culprit in logs ("GET / HTTP", '{"id":') without letting
    # a peer write arbitrary amounts into them.
    return ProxyHeaderError(f"not a PROXY protocol header: {buf[:16]!r}")


def _expect_prefix(buf: bytes, prefix: bytes) -> None:
    """Refuse ``buf`` unless it starts with ``prefix`` or with a part of it."""
    if buf[: len(prefix)] != prefix[: len(buf)]:
        raise _not_a_header(buf)


# --- version 1 --------------------------------------------------------------------------


def _parse_v1(buf: bytes) -> tuple[ProxyInfo, bytes] | None:
    _expect_prefix(buf, V1_PREFIX)
    newline = buf.find(b"\n", 0, V1_MAX_LINE)
    if newline < 0:
        if len(buf) >= V1_MAX_LINE:
            raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX_LINE} bytes")
        return None
    # The prefix check guarantees newline >= len(V1_PREFIX), so newline - 1 is in the line.
    if buf[newline - 1] != ord("\r"):
        raise ProxyHeaderError("PROXY v1 line not terminated by CRLF")
    return _v1_info(buf[: newline - 1]), buf[newline + 1 :]


def _v1_info(line: bytes) -> ProxyInfo:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    fields = text.split(" ")
    protocol = fields[1]
    if protocol == "UNKNOWN":
        # The spec tells receivers to ignore whatever follows UNKNOWN.
        return _NO_ADDRESSES
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"PROXY v1 protocol {protocol[:16]!r} is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise ProxyHeaderError(
            f"PROXY v1 {protocol} line needs 4 single-space separated fields, got {len(fields) - 2}"
        )
    version = 4 if protocol == "TCP4" else 6
    _, _, src_ip, dst_ip, src_port, dst_port = fields
    return ProxyInfo(
        source=(_v1_address(src_ip, version), _v1_port(src_port)),
        destination=(_v1_address(dst_ip, version), _v1_port(dst_port)),
    )


def _v1_address(text: str, version: int) -> str:
    # ip_address also accepts an IPv6 scope ("fe80::1%eth0"); a scope names an interface
    # of the balancer, which means nothing here, so it is refused with the rest.
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if addr is None or addr.version != version or "%" in text:
        raise ProxyHeaderError(f"PROXY v1 bad IPv{version} address {text[:45]!r}")
    return _display(addr)


def _v1_port(text: str) -> int:
    # Digits only (int() would also take "+1", " 1" and "1_0"), no leading zeros, <= 65535.
    valid = text.isdigit() and len(text) <= 5 and (text == "0" or not text.startswith("0"))
    if not valid or int(text) > 0xFFFF:
        raise ProxyHeaderError(f"PROXY v1 bad port {text[:16]!r}")
    return int(text)


# --- version 2 --------------------------------------------------------------------------


def _parse_v2(buf: bytes) -> tuple[ProxyInfo, bytes] | None:
    _expect_prefix(buf, V2_SIGNATURE)
    if len(buf) < V2_FIXED_LEN:
        return None
    version_command, family, length = _V2_FIXED.unpack_from(buf, len(V2_SIGNATURE))
    command = _v2_command(version_command)
    if length > V2_MAX_PAYLOAD:
        raise ProxyHeaderError(f"PROXY v2 payload of {length} bytes exceeds the {V2_MAX_PAYLOAD} cap")
    if command == _V2_LOCAL:
        # LOCAL: the balancer's own connection; the spec says to ignore the family and
        # skip the payload whatever it holds.
        family = _V2_UNSPEC
    # Checked before waiting for the payload, so a bad header is refused at byte 16.
    _v2_check_family(family, length)
    end = V2_FIXED_LEN + length
    if len(buf) < end:
        return None
    # Bytes after the address block are TLVs; nothing here needs them, so they are skipped.
    return _v2_info(family, buf[V2_FIXED_LEN:end]), buf[end:]


def _v2_command(version_command: int) -> int:
    version, command = version_command >> 4, version_command & 0x0F
    if version != _V2_VERSION:
        raise ProxyHeaderError(f"PROXY v2 header with version {version}")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"PROXY v2 header with unknown command {command:#x}")
    return command


def _v2_check_family(family: int, length: int) -> None:
    if family == _V2_UNSPEC:
        return
    if family in _V2_UNSUPPORTED:
        raise ProxyHeaderError(f"PROXY v2 {_V2_UNSUPPORTED[family]} addresses are not supported")
    if family == _V2_TCP4:
        needed = _V4_BLOCK.size
    elif family == _V2_TCP6:
        needed = _V6_BLOCK.size
    else:
        raise ProxyHeaderError(f"PROXY v2 header with invalid family/transport {family:#04x}")
    if length < needed:
        raise ProxyHeaderError(f"PROXY v2 addresses truncated: {length} of {needed} bytes")


def _v2_info(family: int, payload: bytes) -> ProxyInfo:
    if family == _V2_TCP4:
        src, dst, src_port, dst_port = _V4_BLOCK.unpack_from(payload)
        src_ip, dst_ip = _display(ipaddress.IPv4Address(src)), _display(ipaddress.IPv4Address(dst))
    elif family == _V2_TCP6:
        src, dst, src_port, dst_port = _V6_BLOCK.unpack_from(payload)
        src_ip, dst_ip = _display(ipaddress.IPv6Address(src)), _display(ipaddress.IPv6Address(dst))
    else:
        return _NO_ADDRESSES
    return ProxyInfo(source=(src_ip, src_port), destination=(dst_ip, dst_port))


def _display(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as text; IPv4-mapped IPv6 as dotted quad, as :func:`is_trusted` sees it.

    A dual-stack balancer reports IPv4 clients as ``::ffff:a.b.c.d``, which Python 3.11
    prints as ``::ffff:102:304``: useless in logs and a second key for the same client.
    """
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)
