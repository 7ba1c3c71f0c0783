"""HTTP/2 checks: gRPC health (``grpc.health.v1.Health/Check``) and H2PING.

Both speak HTTP/2 through the sans-I/O ``h2`` library over one asyncio connection per probe:
cleartext with prior knowledge (h2c), or TLS with ALPN ``h2`` when ``GRPCUseTLS`` /
``H2PingUseTLS`` is set (``TLSSkipVerify`` and ``TLSServerName`` apply). grpcio is not needed:
a health call is one unary request whose two messages are a single protobuf field each, encoded
here (``HealthCheckRequest{string service = 1}``, ``HealthCheckResponse{ServingStatus
status = 1}``), the way grpc-health-probe and Consul's checker use the same service.

* gRPC: ``SERVING`` is passing; any other serving status, a ``grpc-status`` other than 0
  (e.g. 5 NOT_FOUND for an unknown service), a refused connection or a timeout is critical.
* H2PING: an HTTP/2 PING frame answered by its ACK is passing; anything else is critical.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .catalog import CRITICAL, PASSING
from .checks import Runner, split_hostport

SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
MAX_MESSAGE = 64 * 1024
"""Bytes of a gRPC answer read at most (a health answer is a few bytes)."""


class H2Error(Exception):
    """The peer did not speak HTTP/2 as expected (the text says how)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_health_request(service: str) -> bytes:
    """A gRPC length-prefixed ``HealthCheckRequest``."""
    raw = service.encode()
    msg = (b"\x0a" + _varint(len(raw)) + raw) if raw else b""
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def decode_health_response(data: bytes) -> int:
    """The ``status`` of a length-prefixed ``HealthCheckResponse`` (0 when absent)."""
    if len(data) < 5:
        raise H2Error("gRPC answer shorter than its 5-byte prefix")
    if data[0] != 0:
        raise H2Error("gRPC answer is compressed; health answers are not")
    (size,) = struct.unpack(">I", data[1:5])
    msg = data[5:5 + size]
    if len(msg) != size:
        raise H2Error("gRPC answer truncated")
    status, i = 0, 0
    while i < len(msg):
        key, i = _read_varint(msg, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(msg, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(msg, i)
            i += length
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise H2Error(f"gRPC answer: unknown protobuf wire type {wire}")
    if i > len(msg):
        raise H2Error("gRPC answer: protobuf field runs past the message")
    return status


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        if i >= len(b) or shift > 63:
            raise H2Error("gRPC answer: bad protobuf varint")
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


class H2Client:
    """One HTTP/2 connection, driven until ``done(event)`` says the wanted event came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))

    @classmethod
    async def open(cls, target: str, *, use_tls: bool, skip_verify: bool,
                   server_name: str) -> H2Client:
        host, port = split_hostport(target)
        ctx: ssl.SSLContext | None = None
        if use_tls:
            ctx = ssl.create_default_context()
            if skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=(server_name or host) if ctx else None)
        if ctx is not None:
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is None or sslobj.selected_alpn_protocol() != "h2":
                writer.close()
                raise H2Error("the TLS server did not agree to HTTP/2 (ALPN h2)")
        c = cls(reader, writer)
        c.conn.initiate_connection()
        await c.flush()
        return c

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def until(self, done: Callable[[h2.events.Event], bool]) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise H2Error("connection closed by the server")
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                raise H2Error(f"not an HTTP/2 server ({type(e).__name__})") from None
            await self.flush()
            for ev in events:
                if isinstance(ev, h2.events.ConnectionTerminated):
                    raise H2Error(f"server closed the connection (GOAWAY {ev.error_code})")
                if done(ev):
                    return

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close_connection()
            await self.flush()
        self.writer.close()
        # a TLS peer may never answer our close_notify: do not wait for it long
        try:
            async with asyncio.timeout(0.5):
                await self.writer.wait_closed()
        except TimeoutError:
            self.writer.transport.abort()
        except Exception:  # noqa: BLE001, S110 - closing anyway
            pass


async def grpc_health(target: str, service: str, *, use_tls: bool, skip_verify: bool = False,
                      server_name: str = "") -> int:
    """Call ``grpc.health.v1.Health/Check``; return the serving status, or raise H2Error
    with the gRPC status the server answered."""
    client = await H2Client.open(target, use_tls=use_tls, skip_verify=skip_verify,
                                 server_name=server_name)
    try:
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, [
            (":method", "POST"), (":scheme", "https" if use_tls else "http"),
            (":path", "/grpc.health.v1.Health/Check"), (":authority", target),
            ("content-type", "application/grpc"), ("te", "trailers"),
            ("user-agent", "rumor-health-check"),
        ])
        client.conn.send_data(sid, encode_health_request(service), end_stream=True)
        await client.flush()
        body = bytearray()
        headers: dict[str, str] = {}

        def done(ev: h2.events.Event) -> bool:
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) \
                    and ev.stream_id == sid:
                headers.update((str(k), str(v)) for k, v in ev.headers)
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                body.extend(ev.data)
                client.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                if len(body) > MAX_MESSAGE:
                    raise H2Error("gRPC answer too large")
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise H2Error(f"stream reset by the server (code {ev.error_code})")
            return isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid

        await client.until(done)
    finally:
        await client.close()
    if headers.get(":status") != "200":
        raise H2Error(f"HTTP status {headers.get(':status')} (not a gRPC server?)")
    code = headers.get("grpc-status", "")
    if code != "0":
        msg = headers.get("grpc-message", "")
        raise H2Error(f"gRPC status {code or 'missing'}" + (f": {msg}" if msg else ""))
    return decode_health_response(bytes(body))


async def h2_ping(target: str, *, use_tls: bool, skip_verify: bool = False,
                  server_name: str = "") -> None:
    """Send one HTTP/2 PING and wait for its ACK."""
    client = await H2Client.open(target, use_tls=use_tls, skip_verify=skip_verify,
                                 server_name=server_name)
    try:
        payload = os.urandom(8)
        client.conn.ping(payload)
        await client.flush()
        await client.until(lambda ev: isinstance(ev, h2.events.PingAckReceived)
                           and ev.ping_data == payload)
    finally:
        await client.close()


class GRPCRunner(Runner):
    async def probe(self) -> tuple[str, str]:
        d = self.defn
        target, _, service = d.grpc.partition("/")
        what = f"gRPC check {d.grpc}"
        try:
            async with asyncio.timeout(d.timeout):
                status = await grpc_health(target, service, use_tls=d.grpc_use_tls,
                                           skip_verify=d.tls_skip_verify,
                                           server_name=d.tls_server_name)
        except TimeoutError:
            return CRITICAL, f"{what}: timed out after {d.timeout:g}s"
        except H2Error as e:
            return CRITICAL, f"{what}: {e}"
        except (OSError, ssl.SSLError) as e:
            return CRITICAL, f"{what}: {getattr(e, 'strerror', None) or e}"
        name = SERVING_STATUS.get(status, str(status))
        if status == 1:
            return PASSING, f"{what}: success ({name})"
        return CRITICAL, f"{what}: service {service or '(server)'} is {name}"


class H2PingRunner(Runner):
    async def probe(self) -> tuple[str, str]:
        d = self.defn
        what = f"HTTP2 ping {d.h2ping}"
        try:
            async with asyncio.timeout(d.timeout):
                await h2_ping(d.h2ping, use_tls=d.h2ping_use_tls, skip_verify=d.tls_skip_verify,
                              server_name=d.tls_server_name)
        except TimeoutError:
            return CRITICAL, f"{what}: timed out after {d.timeout:g}s"
        except H2Error as e:
            return CRITICAL, f"{what}: {e}"
        except (OSError, ssl.SSLError) as e:
            return CRITICAL, f"{what}: {getattr(e, 'strerror', None) or e}"
        return PASSING, f"{what}: HTTP2 ping was successful"
