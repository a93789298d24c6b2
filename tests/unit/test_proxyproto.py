"""PROXY protocol v1/v2 header parser and the trusted-balancer check, sans-IO."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.stratum.errors import FramingError
from proxy.stratum.proxyproto import (
    V1_MAX_LINE,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeaderError,
    ProxyHeaderParser,
    ProxyInfo,
    is_trusted,
)
from tests.unit.support import FAST

PROPERTY = settings(FAST, max_examples=300)

STRATUM = b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.11"]}\n'
"""What a miner sends right after the balancer's header; it must come out untouched."""

V1_TCP4 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 3333\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 3333\r\n"

HAPROXY_V2_LOCALHOST = bytes.fromhex(
    "0d0a0d0a000d0a515549540a"  # signature
    "21"  # version 2, command PROXY
    "11"  # AF_INET, SOCK_STREAM
    "000c"  # 12 bytes of addresses follow
    "7f000001"  # source 127.0.0.1
    "7f000001"  # destination 127.0.0.1
    "c350"  # source port 50000
    "0d05"  # destination port 3333
)
"""HAProxy's ``send-proxy-v2`` header for 127.0.0.1:50000 -> 127.0.0.1:3333, per the spec."""


def v2(command: int, family: int, payload: bytes, *, length: int | None = None) -> bytes:
    """A v2 header; ``length`` overrides the payload length field to build broken ones."""
    size = len(payload) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, size) + payload


def v4_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def v6_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


TLVS = tlv(0x01, b"h2") + tlv(0x02, b"pool.example.com") + tlv(0x05, b"\x00" * 32) + tlv(0x04, b"")
"""ALPN, authority, unique id and a NOOP, as HAProxy would append them."""


def parse_chunks(chunks: list[bytes]) -> tuple[ProxyInfo, bytes]:
    """Feed chunks until the header completes; return it and the whole stream after it."""
    parser = ProxyHeaderParser()
    for i, chunk in enumerate(chunks):
        result = parser.feed(chunk)
        if result is not None:
            info, rest = result
            return info, rest + b"".join(chunks[i + 1 :])
    raise AssertionError("header never completed")


def parse(data: bytes) -> tuple[ProxyInfo, bytes]:
    return parse_chunks([data])


def refuse(data: bytes, match: str) -> None:
    with pytest.raises(ProxyHeaderError, match=match):
        ProxyHeaderParser().feed(data)


# --- version 1 --------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    info, rest = parse(V1_TCP4 + STRATUM)
    assert info == ProxyInfo(source=("192.0.2.7", 56324), destination=("198.51.100.1", 3333))
    assert rest == STRATUM


def test_v1_tcp6() -> None:
    info, rest = parse(V1_TCP6 + STRATUM)
    assert info == ProxyInfo(source=("2001:db8::7", 56324), destination=("2001:db8::1", 3333))
    assert rest == STRATUM


def test_v1_tcp6_mapped_address_given_as_ipv4() -> None:
    info, _ = parse(b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:198.51.100.1 1 2\r\n")
    assert info.source == ("192.0.2.7", 1)
    assert info.destination == ("198.51.100.1", 2)


@pytest.mark.parametrize(
    "line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"]
)
def test_v1_unknown_has_no_addresses(line: bytes) -> None:
    assert parse(line + STRATUM) == (ProxyInfo(source=None, destination=None), STRATUM)


def test_v1_longest_legal_lines() -> None:
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
    tcp6 = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    unknown = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    # The spec's 107 is this UNKNOWN line, three characters longer than the TCP6 one.
    assert (len(tcp6), len(unknown)) == (104, V1_MAX_LINE)
    assert parse(tcp6 + STRATUM) == (ProxyInfo((full, 65535), (full, 65535)), STRATUM)
    assert parse(unknown + STRATUM) == (ProxyInfo(None, None), STRATUM)


def test_v1_port_bounds() -> None:
    info, _ = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n")
    assert info == ProxyInfo(source=("1.2.3.4", 0), destination=("5.6.7.8", 65535))


def test_v1_header_without_stratum_yet() -> None:
    assert parse(V1_TCP4)[1] == b""


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 65536\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01111 2222\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1111 2222\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 \r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1_111 2222\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1111 2222\r\n", "bad IPv4 address"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1111 2222\r\n", "bad IPv4 address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1111 2222\r\n", "bad IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1111 2222\r\n", "bad IPv6 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1111 2222\r\n", "bad IPv6 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n", "needs 4"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222 3333\r\n", "needs 4"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1111 2222\r\n", "needs 4"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222 \r\n", "needs 4"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1111 2222\r\n", "'UDP4' is not TCP4"),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1111 2222\r\n", "is not TCP4"),
        (b"PROXY \r\n", "'' is not TCP4"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\n", "CRLF"),
        (b"PROXY TCP4 1.2.3.\xc4 5.6.7.8 1111 2222\r\n", "not ASCII"),
    ],
)
def test_v1_malformed(line: bytes, match: str) -> None:
    refuse(line + STRATUM, match)


def test_v1_oversized_line_refused_at_the_cap() -> None:
    parser = ProxyHeaderParser()
    line = b"PROXY TCP6 " + b"f" * 200 + b"\r\n"
    for i in range(V1_MAX_LINE - 1):
        assert parser.feed(line[i : i + 1]) is None
        assert parser.buffered == i + 1
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parser.feed(line[V1_MAX_LINE - 1 : V1_MAX_LINE])


def test_v1_crlf_just_past_the_cap_is_too_long() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LINE - 15) + b"\r\n"
    assert len(line) == V1_MAX_LINE + 1
    refuse(line, "longer than 107")


# --- version 2 --------------------------------------------------------------------------


def test_v2_real_haproxy_bytes() -> None:
    assert len(HAPROXY_V2_LOCALHOST) == 28
    info, rest = parse(HAPROXY_V2_LOCALHOST + STRATUM)
    assert info == ProxyInfo(source=("127.0.0.1", 50000), destination=("127.0.0.1", 3333))
    assert rest == STRATUM


@pytest.mark.parametrize("tlvs", [b"", TLVS], ids=["bare", "tlvs"])
def test_v2_tcp4(tlvs: bytes) -> None:
    header = v2(0x1, 0x11, v4_block("192.0.2.7", "198.51.100.1", 56324, 3333) + tlvs)
    info, rest = parse(header + STRATUM)
    assert info == ProxyInfo(source=("192.0.2.7", 56324), destination=("198.51.100.1", 3333))
    assert rest == STRATUM


@pytest.mark.parametrize("tlvs", [b"", TLVS], ids=["bare", "tlvs"])
def test_v2_tcp6(tlvs: bytes) -> None:
    header = v2(0x1, 0x21, v6_block("2001:db8::7", "2001:db8::1", 56324, 3333) + tlvs)
    info, rest = parse(header + STRATUM)
    assert info == ProxyInfo(source=("2001:db8::7", 56324), destination=("2001:db8::1", 3333))
    assert rest == STRATUM


def test_v2_tcp6_mapped_address_given_as_ipv4() -> None:
    info, _ = parse(v2(0x1, 0x21, v6_block("::ffff:192.0.2.7", "::ffff:10.0.0.1", 1, 2)))
    assert info == ProxyInfo(source=("192.0.2.7", 1), destination=("10.0.0.1", 2))


@pytest.mark.parametrize(
    "header",
    [
        v2(0x0, 0x00, b""),
        # LOCAL: the family is ignored and whatever payload there is gets skipped.
        v2(0x0, 0x11, v4_block("10.0.0.1", "10.0.0.2", 1, 2) + TLVS),
        v2(0x0, 0x31, b"\x00" * 216),
        v2(0x0, 0xFF, b"junk"),
        # PROXY with UNSPEC: use the socket's endpoints.
        v2(0x1, 0x00, b""),
        v2(0x1, 0x00, TLVS),
    ],
    ids=["local", "local-tcp4", "local-unix", "local-bad-family", "unspec", "unspec-tlvs"],
)
def test_v2_without_client_address(header: bytes) -> None:
    assert parse(header + STRATUM) == (ProxyInfo(source=None, destination=None), STRATUM)


def test_v2_payload_at_the_cap() -> None:
    padding = tlv(0x04, b"\x00" * (V2_MAX_PAYLOAD - 12 - 3))
    header = v2(0x1, 0x11, v4_block("10.0.0.1", "10.0.0.2", 1, 2) + padding)
    assert len(header) == 16 + V2_MAX_PAYLOAD
    assert parse(header + STRATUM)[1] == STRATUM


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (v2(0x1, 0x41, b"\x00" * 12), "invalid family/transport 0x41"),
        (v2(0x1, 0x10, b"\x00" * 12), "invalid family/transport 0x10"),
        (v2(0x1, 0x13, b"\x00" * 12), "invalid family/transport 0x13"),
        (v2(0x1, 0x12, b"\x00" * 12), "UDP4 addresses are not supported"),
        (v2(0x1, 0x22, b"\x00" * 36), "UDP6 addresses are not supported"),
        (v2(0x1, 0x31, b"\x00" * 216), "UNIX stream addresses are not supported"),
        (v2(0x1, 0x11, b"\x00" * 11), "truncated: 11 of 12"),
        (v2(0x1, 0x11, b""), "truncated: 0 of 12"),
        (v2(0x1, 0x21, b"\x00" * 12), "truncated: 12 of 36"),
        (v2(0x2, 0x11, b"\x00" * 12), "unknown command 0x2"),
        (v2(0xF, 0x11, b"\x00" * 12), "unknown command 0xf"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12, "version 1"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, "version 3"),
        (v2(0x1, 0x11, b"", length=V2_MAX_PAYLOAD + 1), "4097 bytes exceeds the 4096 cap"),
        (v2(0x0, 0x00, b"", length=0xFFFF), "65535 bytes exceeds"),
    ],
)
def test_v2_malformed(header: bytes, match: str) -> None:
    refuse(header + STRATUM, match)


def test_v2_bad_fixed_part_refused_before_payload_arrives() -> None:
    # Only the 16 fixed bytes are sent: the claimed payload never has to be awaited.
    for header in (
        v2(0x1, 0x11, b"", length=V2_MAX_PAYLOAD + 1),
        v2(0x1, 0x41, b"", length=12),
        v2(0x1, 0x11, b"", length=4),
    ):
        assert len(header) == 16
        with pytest.raises(ProxyHeaderError):
            ProxyHeaderParser().feed(header)


def test_v2_waits_for_the_whole_payload() -> None:
    header = v2(0x1, 0x11, v4_block("10.0.0.1", "10.0.0.2", 1, 2) + TLVS)
    parser = ProxyHeaderParser()
    assert parser.feed(header[:-1]) is None
    assert parser.buffered == len(header) - 1
    assert parser.feed(header[-1:] + STRATUM) is not None


def test_v2_never_holds_more_than_one_capped_header() -> None:
    header = v2(0x1, 0x11, v4_block("10.0.0.1", "10.0.0.2", 1, 2) + b"\x00" * (V2_MAX_PAYLOAD - 12))
    parser = ProxyHeaderParser()
    peak = 0
    for i in range(0, len(header) - 1, 97):
        assert parser.feed(header[i : min(i + 97, len(header) - 1)]) is None
        peak = max(peak, parser.buffered)
    assert peak == 16 + V2_MAX_PAYLOAD - 1
    assert parser.feed(header[-1:]) is not None


# --- split feeding ------------------------------------------------------------------------

ALL_HEADERS = [
    V1_TCP4,
    V1_TCP6,
    b"PROXY UNKNOWN\r\n",
    HAPROXY_V2_LOCALHOST,
    v2(0x1, 0x21, v6_block("2001:db8::7", "2001:db8::1", 56324, 3333) + TLVS),
    v2(0x0, 0x00, b""),
]
HEADER_IDS = ["v1-tcp4", "v1-tcp6", "v1-unknown", "v2-tcp4", "v2-tcp6-tlvs", "v2-local"]


@pytest.mark.parametrize("header", ALL_HEADERS, ids=HEADER_IDS)
def test_split_at_every_boundary(header: bytes) -> None:
    expected = parse(header + STRATUM)
    stream = header + STRATUM
    for cut in range(len(stream) + 1):
        assert parse_chunks([stream[:cut], stream[cut:]]) == expected, cut


@pytest.mark.parametrize("header", ALL_HEADERS, ids=HEADER_IDS)
def test_one_byte_at_a_time(header: bytes) -> None:
    stream = header + STRATUM
    parser = ProxyHeaderParser()
    for i in range(len(header) - 1):
        assert parser.feed(stream[i : i + 1]) is None
    result = parser.feed(stream[len(header) - 1 : len(header)])
    assert result == (parse(header)[0], b"")


@PROPERTY
@given(header=st.sampled_from(ALL_HEADERS), cuts=st.lists(st.integers(min_value=0, max_value=200)))
def test_random_chunking_keeps_stratum_bytes(header: bytes, cuts: list[int]) -> None:
    stream = header + STRATUM
    bounds = sorted({min(cut, len(stream)) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    info, rest = parse_chunks(chunks)
    assert info == parse(header)[0]
    assert rest == STRATUM


def test_feed_after_header_is_a_programming_error() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(V1_TCP4) is not None
    with pytest.raises(RuntimeError, match="already parsed"):
        parser.feed(STRATUM)


def test_empty_feed_needs_more() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"") is None
    assert parser.feed(b"PROXY") is None
    assert parser.feed(b"") is None
    assert parser.buffered == 5


# --- garbage --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: pool\r\n\r\n",
        STRATUM,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS ClientHello
        b"PROXYGARBAGE\r\n",
        b"\r\n\r\n\r\n",
    ],
    ids=["http", "stratum-json", "tls", "proxy-then-garbage", "blank-lines"],
)
def test_garbage_first_line(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError, match="not a PROXY protocol header"):
        ProxyHeaderParser().feed(data)


@pytest.mark.parametrize(
    "first",
    [
        b"G",
        b"{",
        b"\x16",
        b"p",
        b"\n",
        b"PROXX",
        b"PROXY\t",
        b"\r\r",
        b"\r\n\r\n\x00\r\nQUIx",
        b"\r\n\r\n\x01",
    ],
)
def test_garbage_refused_as_early_as_possible(first: bytes) -> None:
    parser = ProxyHeaderParser()
    for i in range(len(first) - 1):
        assert parser.feed(first[i : i + 1]) is None
    with pytest.raises(ProxyHeaderError):
        parser.feed(first[-1:])


def test_peer_error_hierarchy() -> None:
    err = ProxyHeaderError("x")
    assert isinstance(err, FramingError)
    assert err.message == "x"


def feed_fuzz(chunks: list[bytes]) -> None:
    """Feed until done or refused; anything but ProxyHeaderError escapes and fails."""
    parser = ProxyHeaderParser()
    try:
        for chunk in chunks:
            result = parser.feed(chunk)
            assert parser.buffered <= 16 + V2_MAX_PAYLOAD
            if result is not None:
                return
            # A v1 candidate is either complete or refused before 107 bytes pile up.
            if parser.buffered and chunks[0][:1] == b"P":
                assert parser.buffered < V1_MAX_LINE
    except ProxyHeaderError:
        pass


@PROPERTY
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_fuzz_random_bytes(chunks: list[bytes]) -> None:
    feed_fuzz(chunks)


@PROPERTY
@given(
    st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN", V2_SIGNATURE]),
    st.lists(st.binary(max_size=300), max_size=6),
)
def test_fuzz_after_valid_prefix(prefix: bytes, chunks: list[bytes]) -> None:
    feed_fuzz([prefix, *chunks])


@PROPERTY
@given(
    st.sampled_from([0x20, 0x21]),
    st.sampled_from([0x00, 0x11, 0x21, 0x12, 0x31, 0x41]) | st.integers(0, 255),
    st.binary(max_size=80),
    st.integers(0, 100),
)
def test_fuzz_v2_fields(version_command: int, family: int, payload: bytes, length: int) -> None:
    feed_fuzz([V2_SIGNATURE + struct.pack("!BBH", version_command, family, length) + payload])


@PROPERTY
@given(
    st.sampled_from(["TCP4", "TCP6", "UNKNOWN", "UDP4", ""]),
    st.lists(st.text(st.characters(codec="ascii"), max_size=40), max_size=7),
)
def test_fuzz_v1_fields(protocol: str, fields: list[str]) -> None:
    feed_fuzz([f"PROXY {' '.join([protocol, *fields])}\r\n".encode()])


# --- round trips ----------------------------------------------------------------------------


def _v6_unmapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Mapped addresses come back in IPv4 form; they have their own tests above.
    return isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None


IPV4 = st.ip_addresses(v=4)
IPV6 = st.ip_addresses(v=6).filter(_v6_unmapped)
PORTS = st.integers(0, 0xFFFF)


@PROPERTY
@given(src=IPV4, dst=IPV4, sport=PORTS, dport=PORTS, use_v2=st.booleans())
def test_roundtrip_tcp4(
    src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, dport: int, use_v2: bool
) -> None:
    if use_v2:
        header = v2(0x1, 0x11, v4_block(str(src), str(dst), sport, dport))
    else:
        header = f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()
    assert parse(header + STRATUM) == (ProxyInfo((str(src), sport), (str(dst), dport)), STRATUM)


@PROPERTY
@given(src=IPV6, dst=IPV6, sport=PORTS, dport=PORTS, use_v2=st.booleans())
def test_roundtrip_tcp6(
    src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, sport: int, dport: int, use_v2: bool
) -> None:
    if use_v2:
        header = v2(0x1, 0x21, v6_block(str(src), str(dst), sport, dport))
    else:
        header = f"PROXY TCP6 {src.exploded} {dst} {sport} {dport}\r\n".encode()
    assert parse(header + STRATUM) == (ProxyInfo((str(src), sport), (str(dst), dport)), STRATUM)


# --- is_trusted ------------------------------------------------------------------------------

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:1::/48")]


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("192.168.0.1", False),
        ("2001:db8:1::42", True),
        ("2001:db8:1:ffff::1", True),
        ("2001:db8:2::1", False),
        ("::1", False),
        ("::ffff:10.0.0.1", True),
        ("::ffff:11.0.0.1", False),
        ("::a00:1", False),  # IPv4-compatible, not mapped: a different address
        ("", False),
        ("not an ip", False),
        ("/run/haproxy.sock", False),
    ],
)
def test_is_trusted(peer: str, trusted: bool) -> None:
    assert is_trusted(peer, TRUSTED) is trusted


def test_is_trusted_with_no_networks() -> None:
    assert not is_trusted("10.0.0.1", [])


def test_is_trusted_mapped_network_only_matches_mapped_peers() -> None:
    # Networks are configured in IPv4 form; a plain IPv4 peer is not also tried as mapped.
    mapped = [ipaddress.IPv6Network("::ffff:10.0.0.0/104")]
    assert is_trusted("::ffff:10.9.9.9", mapped)
    assert not is_trusted("10.9.9.9", mapped)
