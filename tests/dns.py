"""A DNS server on loopback (dnslib, UDP and TCP on one port) serving the zones a test gives."""

from __future__ import annotations

from typing import Any

from dnslib import MX, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.smtp import free_port

Records = dict[str, dict[str, list[str]]]  # name -> type -> values


def txt(value: str) -> TXT:
    """A TXT record of any length, in the 255-byte strings DNS carries it in."""
    data = value.encode()
    return TXT([data[i : i + 255] for i in range(0, len(data), 255)] or [b""])


class _Zones(BaseResolver):  # type: ignore[misc]
    def __init__(self, records: Records) -> None:
        self.records = {name.lower().rstrip("."): kinds for name, kinds in records.items()}

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        if name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in self.records[name].get(kind, []):
            rdata = {"TXT": txt, "MX": lambda v: MX(v.split()[1], int(v.split()[0])), "A": A}[kind](
                value
            )
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        return reply


class DnsServer:
    def __init__(self, records: Records) -> None:
        self.port = free_port()
        quiet = DNSLogger(logf=lambda _: None)
        resolver = _Zones(records)
        self.servers = [
            DNSServer(resolver, address="127.0.0.1", port=self.port, tcp=tcp, logger=quiet)
            for tcp in (False, True)
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DnsServer:
        for server in self.servers:
            server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()
