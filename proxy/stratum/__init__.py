"""Stratum V1 wire protocol, sans-IO: framing, message Structs, decoding and encoding.

Nothing here touches a socket, a clock or a logger; the IO adapters feed bytes in and
write the bytes that come out.
"""
