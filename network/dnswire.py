"""The embedded DNS resolver's messages, parsed and built with dnspython (network/dns.py
serves the sockets and imports this module with the first query it has to parse)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from network.dns import TTL, UDP_MIN_SIZE

if TYPE_CHECKING:
    from network.dnsnames import Directory


def parse(data: bytes) -> tuple[dns.message.Message | None, bytes | None, str | None]:
    """(query, None, None) for a query to answer, or (None, reply, error) for one refused at
    once (reply None: not even a header to answer to; error: why it did not parse)."""
    try:
        q = dns.message.from_wire(data)
    except Exception as e:  # dnspython raises many kinds for garbage; all mean the same here
        return None, error_reply(data, dns.rcode.FORMERR), str(e)
    if q.flags & dns.flags.QR:
        return None, None, None  # a response sent to us: never answer those (no loops)
    if q.opcode() != dns.opcode.QUERY:
        return None, reply_wire(reply(q, dns.rcode.NOTIMP)), None
    if len(q.question) != 1:
        return None, reply_wire(reply(q, dns.rcode.FORMERR)), None
    return q, None, None


def answer_local(directory: Directory, owner: str, q: dns.message.Message) -> dns.message.Message | None:
    """The answer when the name is ours; None to forward it."""
    question = q.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None
    qtype = question.rdtype
    if qtype in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.MX):
        found = directory.addresses(owner, question.name.to_text(omit_final_dot=True).lower())
        if found is None:
            return None
        resp = reply(q, dns.rcode.NOERROR)
        # MX, or a family the name has no address in: NOERROR without records, so that a
        # client does not go on to ask the world about a container's name.
        ips = found.v4 if qtype == dns.rdatatype.A else found.v6 if qtype == dns.rdatatype.AAAA else []
        if ips:
            ips = list(ips)
            random.shuffle(ips)  # several replicas of a service: spread the clients
            resp.answer.append(dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, qtype, ips))
        return resp
    if qtype == dns.rdatatype.PTR:
        try:
            address = dns.reversename.to_address(question.name)
        except Exception:
            return None
        host = directory.hostname(owner, address)
        if host is None:
            return None
        resp = reply(q, dns.rcode.NOERROR)
        resp.answer.append(dns.rrset.from_text(question.name, TTL, dns.rdataclass.IN, dns.rdatatype.PTR,
                                               host.rstrip(".") + "."))
        return resp
    return None


async def forward(q: dns.message.Message, upstreams: list[str], *, tcp: bool, timeout: float, port: int,
                  failed: Callable[[str, Exception], None]) -> dns.message.Message:
    """Asks `upstreams` in order: the first answer that is not SERVFAIL or REFUSED is the
    answer; failing all, the last one (or SERVFAIL). `failed` hears of each that did not answer."""
    # Imported with the first forward: the client side of dnspython (query, asyncquery and
    # what they bring: quic, xfr, transaction, the async backends) is ~0.25 MiB that a daemon
    # whose containers only ask each other's names never needs.
    from dns import asyncquery

    last = None
    for server in upstreams:
        try:
            if tcp:
                r = await asyncquery.tcp(q, server, timeout=timeout, port=port)
            else:
                r = await asyncquery.udp(q, server, timeout=timeout, port=port, ignore_unexpected=True)
        except (OSError, dns.exception.DNSException, EOFError, ValueError) as e:
            failed(server, e)
            continue
        if r.rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
            last = r
            continue
        return r
    return last if last is not None else servfail(q)


def servfail(q: dns.message.Message) -> dns.message.Message:
    return reply(q, dns.rcode.SERVFAIL)


def reply(q: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    resp = dns.message.make_response(q)
    resp.flags |= dns.flags.RA
    resp.set_rcode(rcode)
    return resp


def udp_limit(q: dns.message.Message) -> int:
    return max(UDP_MIN_SIZE, q.payload if q.edns >= 0 else UDP_MIN_SIZE)


def reply_wire(resp: dns.message.Message, limit: int = 65535) -> bytes:
    """The reply within `limit` bytes: answers dropped from the end and TC set when it does not
    fit, so that the client asks again over TCP (as dockerd's truncateResp)."""
    try:
        return resp.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    resp.flags |= dns.flags.TC
    while True:
        if resp.answer and len(resp.answer[-1]) > 1:
            resp.answer[-1] = shorter(resp.answer[-1])
        elif resp.answer:
            resp.answer.pop()
        elif resp.additional:
            resp.additional.pop()
        else:
            resp.authority.clear()
        with contextlib.suppress(dns.exception.TooBig):
            return resp.to_wire(max_size=limit)


def shorter(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    items = list(rrset)[:-1]
    return dns.rrset.from_rdata_list(rrset.name, rrset.ttl, items)


def error_reply(data: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """An error reply to something that did not parse, when at least its header is there."""
    if len(data) < 12 or data[2] & 0x80:  # no header, or a response: never answer those
        return None
    resp = dns.message.Message(id=int.from_bytes(data[:2], "big"))
    resp.flags = dns.flags.QR | dns.flags.RA
    resp.set_rcode(rcode)
    return resp.to_wire()
