"""Writing libpcap files (the classic format tcpdump and Wireshark read) of messages whose
link, IP and UDP headers are synthesized: a SIP trace kept as text becomes a capture
carrier support can open. Sans-IO: packets in, bytes out.

    file   = global header (24 bytes) *(record header (16 bytes) + frame)
    frame  = Ethernet II (14) + IPv4 (20) or IPv6 (40) + UDP (8) + payload
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = 0xA1B2C3D4  # microsecond timestamps
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
MAX_UDP_PAYLOAD = 65535 - 8 - 40  # what fits in one UDP datagram over IPv6 (and IPv4)
_MAC_A = bytes.fromhex("020000000001")  # locally administered, made up
_MAC_B = bytes.fromhex("020000000002")

Addr = tuple[str, int]


@dataclass(frozen=True)
class UdpPacket:
    at: float  # Unix time, seconds
    src: Addr
    dst: Addr
    payload: bytes


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(pkt: UdpPacket, ident: int) -> bytes:
    src_ip = ipaddress.ip_address(pkt.src[0])
    dst_ip = ipaddress.ip_address(pkt.dst[0])
    if src_ip.version != dst_ip.version:  # an IPv4 peer seen on a dual-stack socket: map it
        src_ip, dst_ip = (ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ip
                          for ip in (src_ip, dst_ip))
    payload = pkt.payload[:MAX_UDP_PAYLOAD]
    udp_len = 8 + len(payload)
    if src_ip.version == 4:
        pseudo = src_ip.packed + dst_ip.packed + struct.pack("!BBH", 0, 17, udp_len)
    else:
        pseudo = src_ip.packed + dst_ip.packed + struct.pack("!IxxxB", udp_len, 17)
    udp_head = struct.pack("!HHHH", pkt.src[1], pkt.dst[1], udp_len, 0)
    udp_sum = _checksum(pseudo + udp_head + payload) or 0xFFFF
    udp = struct.pack("!HHHH", pkt.src[1], pkt.dst[1], udp_len, udp_sum) + payload
    if src_ip.version == 4:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0x4000, 64, 17, 0,
                           src_ip.packed, dst_ip.packed)
        ip = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, src_ip.packed, dst_ip.packed)
        ethertype = 0x86DD
    return _MAC_B + _MAC_A + struct.pack("!H", ethertype) + ip + udp


def write_pcap(packets: Iterable[UdpPacket]) -> bytes:
    out = [struct.pack("<IHHiIII", MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for n, pkt in enumerate(packets):
        frame = _frame(pkt, n)
        seconds = int(pkt.at)
        micros = min(999_999, round((pkt.at - seconds) * 1_000_000))
        out.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)
