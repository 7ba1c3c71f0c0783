"""TCP streams (§5): one message per stream, plain, compressed or in an encrypted frame.

Plain streams carry no length, so :class:`StreamReader` parses incrementally: feed it bytes as
they arrive and it returns the message once complete (§5.6), every size capped by
``CodecLimits``."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any, overload

import msgpack  # type: ignore[import-untyped]

from ..errors import (
    REASON_BAD_MSGPACK,
    REASON_BAD_TYPE,
    REASON_NOT_ENCRYPTED,
    REASON_TOO_LARGE,
    REASON_TRUNCATED,
    MalformedPacket,
)
from ..messages import (
    MessageType,
    PushNodeState,
    PushPull,
    PushPullHeader,
    StreamMessage,
    UserMsg,
)
from ..security import ENCRYPTION_OVERHEAD, Keyring
from .gomsgpack import (
    as_int,
    as_struct,
    bad_value,
)
from .limits import (
    DEFAULT_LIMITS,
    STREAM_FRAME_HEADER_SIZE,
    CodecLimits,
)
from .messages import (
    TYPE_NAMES,
    decode_ack_body,
    decode_compress_body,
    decode_err_body,
    decode_node_state_cached,
    decode_ping_body,
    decode_push_pull_header,
    encode_message,
    encode_user_msg_stream,
)
from .packet import (
    compress_message,
    inflate,
)


def encode_stream(
    msg: StreamMessage | bytes,
    *,
    compress: bool = False,
    keyring: Keyring | None = None,
) -> bytes:
    """Everything one side writes on a stream for ``msg`` (§5.1).

    ``msg`` is a message object or an encoded plain message. With ``compress`` the message is
    always LZW-wrapped (Go does so even when it grows); with a non-empty ``keyring`` it goes in
    an encrypted frame whose 5-byte header is the GCM AAD.
    """
    if isinstance(msg, (bytes, bytearray)):
        out = bytes(msg)
    elif isinstance(msg, UserMsg):
        out = encode_user_msg_stream(msg.payload)
    else:
        out = encode_message(msg)
    if compress:
        out = compress_message(out)
    if keyring:
        frame_len = ENCRYPTION_OVERHEAD + len(out)
        header = struct.pack(">BI", MessageType.ENCRYPT, frame_len)
        out = header + keyring.encrypt(out, aad=header)
    return out


_STREAM_PLAIN_TYPES = frozenset(
    {
        MessageType.PING,
        MessageType.ACK_RESP,
        MessageType.PUSH_PULL,
        MessageType.USER,
        MessageType.ERR,
    }
)


class LazyStates(Sequence[PushNodeState]):
    """The node states of a push/pull, kept encoded: the reader only skips over them (finding
    where each starts costs ~1 ms for 5,000; decoding them all ~10-45 ms), and the core decodes
    them ``decode(start, stop)`` a slice at a time. Indexing and iteration decode too, so it
    reads as a tuple; a malformed state raises ``MalformedPacket`` when it is decoded."""

    __slots__ = ("_buf", "_offsets")

    def __init__(self, buf: bytes, offsets: list[int]) -> None:
        self._buf = buf
        self._offsets = offsets
        """Where state i starts (and, last, where the states end) in ``buf``."""

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def decode(self, start: int, stop: int) -> list[PushNodeState]:
        buf, offs = self._buf, self._offsets
        out: list[PushNodeState] = []
        for i in range(start, min(stop, len(offs) - 1)):
            try:
                obj = msgpack.unpackb(buf[offs[i]:offs[i + 1]], raw=False,
                                      unicode_errors="surrogateescape", strict_map_key=True)
            except Exception as exc:  # noqa: BLE001 - hostile input (the skip parsed it once)
                raise MalformedPacket(REASON_BAD_MSGPACK,
                                      f"msgpack: {type(exc).__name__}") from None
            out.append(decode_node_state_cached(obj))
        return out

    @overload
    def __getitem__(self, i: int) -> PushNodeState: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[PushNodeState, ...]: ...

    def __getitem__(self, i: int | slice) -> PushNodeState | tuple[PushNodeState, ...]:
        if isinstance(i, slice):
            return tuple(self.decode(0, len(self)))[i]
        n = len(self)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(i)
        return self.decode(j, j + 1)[0]

    def __iter__(self) -> Iterator[PushNodeState]:
        return iter(self.decode(0, len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (LazyStates, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyStates({len(self)} states)"


class _PlainStreamParser:
    """Incremental parser of one plain stream message (after its type byte), per §5.6.

    ``lazy``: a push/pull's node states are skipped over, not decoded (see :class:`LazyStates`)."""

    __slots__ = (
        "_header",
        "_lazy",
        "_limits",
        "_max_decompressed",
        "_offsets",
        "_raw",
        "_states",
        "_type",
        "_unpacker",
        "_user",
        "_user_len",
        "_want_lazy",
    )

    def __init__(self, msg_type: int, limits: CodecLimits, max_decompressed: int,
                 lazy: bool = False) -> None:
        if msg_type not in _STREAM_PLAIN_TYPES and msg_type != MessageType.COMPRESS:
            name = TYPE_NAMES.get(msg_type, "unknown")
            raise MalformedPacket(REASON_BAD_TYPE, f"message type {msg_type} ({name}) on a stream")
        self._type = msg_type
        self._limits = limits
        self._max_decompressed = max_decompressed
        container = limits.max_container_len
        self._unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=True,
            max_buffer_size=max(limits.max_stream_size, 1),
            max_array_len=container,
            max_map_len=container,
        )
        self._header: PushPullHeader | None = None
        self._states: list[PushNodeState] = []
        self._user = bytearray()
        self._user_len = -1
        self._want_lazy = lazy
        self._lazy = lazy and msg_type == MessageType.PUSH_PULL
        self._raw = bytearray()
        """A lazy push/pull's bytes (the unpacker's input, which it cannot give back)."""
        self._offsets: list[int] = []

    def feed(self, data: bytes) -> StreamMessage | None:
        if data:
            if self._lazy:
                self._raw += data
            try:
                self._unpacker.feed(data)
            except msgpack.BufferFull:
                raise MalformedPacket(REASON_TOO_LARGE, "stream exceeds the size cap") from None
        return self._advance()

    def _next(self) -> Any:
        """The next msgpack object, or raise _Incomplete."""
        try:
            return self._unpacker.unpack()
        except msgpack.OutOfData:
            raise _Incomplete from None
        except ValueError as exc:
            raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - hostile input, msgpack raises assorted types
            raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {type(exc).__name__}") from None

    def _advance(self) -> StreamMessage | None:
        try:
            return self._step()
        except _Incomplete:
            return None

    def _step(self) -> StreamMessage:
        t = self._type
        if t == MessageType.PING:
            return decode_ping_body(as_struct(self._next(), "ping"))
        if t == MessageType.ACK_RESP:
            return decode_ack_body(as_struct(self._next(), "ackResp"))
        if t == MessageType.ERR:
            return decode_err_body(as_struct(self._next(), "err"))
        if t == MessageType.COMPRESS:
            c = decode_compress_body(as_struct(self._next(), "compress"))
            inner = inflate(c, self._max_decompressed)
            if inner[0] == MessageType.COMPRESS:
                raise MalformedPacket(REASON_BAD_TYPE, "compress inside compress on a stream")
            return _parse_complete_stream(inner, self._limits, self._max_decompressed,
                                          self._want_lazy)
        if t == MessageType.USER:
            if self._user_len < 0:
                f = as_struct(self._next(), "userMsgHeader")
                n = as_int(f.get("UserMsgLen"), "UserMsgLen")
                if n < 0 or n > self._limits.max_stream_size:
                    raise bad_value("UserMsgLen", n, "a length within the stream cap")
                self._user_len = n
            self._read_raw()
            return UserMsg(bytes(self._user))
        # push/pull: header, N states, L raw bytes
        if self._header is None:
            header = decode_push_pull_header(as_struct(self._next(), "pushPullHeader"))
            if not 0 <= header.nodes <= self._limits.max_push_pull_nodes:
                raise bad_value("Nodes", header.nodes, "a node count within the cap")
            if not 0 <= header.user_state_len <= self._limits.max_stream_size:
                raise bad_value("UserStateLen", header.user_state_len, "a length within the cap")
            self._header = header
            self._user_len = header.user_state_len
        if self._lazy:
            # where each state ends (the unpacker keeps a partly read object's progress, so
            # its position before a skip that ran out of data is not where the object starts)
            offs = self._offsets
            if not offs:
                offs.append(self._unpacker.tell())  # the end of the header
            while len(offs) <= self._header.nodes:
                self._skip()
                offs.append(self._unpacker.tell())
            self._read_raw()
            return PushPull(join=self._header.join, states=LazyStates(bytes(self._raw[:offs[-1]]), offs),
                            user_state=bytes(self._user))
        while len(self._states) < self._header.nodes:
            self._states.append(decode_node_state_cached(self._next()))
        self._read_raw()
        return PushPull(
            join=self._header.join, states=tuple(self._states), user_state=bytes(self._user)
        )

    def _skip(self) -> None:
        """Skip the next msgpack object, or raise _Incomplete."""
        try:
            self._unpacker.skip()
        except msgpack.OutOfData:
            raise _Incomplete from None
        except ValueError as exc:
            raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - hostile input, msgpack raises assorted types
            raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {type(exc).__name__}") from None

    def _read_raw(self) -> None:
        missing = self._user_len - len(self._user)
        if missing > 0:
            self._user += self._unpacker.read_bytes(missing)
            if len(self._user) < self._user_len:
                raise _Incomplete


class _Incomplete(Exception):
    """Internal: the stream needs more bytes."""


def _parse_complete_stream(buf: bytes, limits: CodecLimits, max_decompressed: int,
                           lazy: bool = False) -> StreamMessage:
    if not buf:
        raise MalformedPacket(REASON_TRUNCATED, "empty stream message")
    parser = _PlainStreamParser(buf[0], limits, max_decompressed, lazy)
    msg = parser.feed(buf[1:])
    if msg is None:
        raise MalformedPacket(REASON_TRUNCATED, "stream message cut short")
    return msg


class StreamReader:
    """Incremental reader of one inbound TCP stream message (plain, compressed or encrypted).

    ``feed(data)`` returns the message once it is complete and ``None`` while more bytes are
    needed; it raises ``MalformedPacket`` on bad input (``not_encrypted`` when a keyring is set,
    ``require_encryption`` holds and the stream is plain). ``feed_eof()`` raises ``truncated``
    if the peer closed before the message was complete. Bytes after the message are ignored.
    Never blocks: call it from an asyncio reader loop.
    """

    __slots__ = (
        "_error",
        "_frame",
        "_keyring",
        "_lazy",
        "_limits",
        "_plain",
        "_received",
        "_require_encryption",
        "_result",
        "compressed",
        "encrypted",
        "message_type",
    )

    def __init__(
        self,
        keyring: Keyring | None = None,
        *,
        limits: CodecLimits = DEFAULT_LIMITS,
        verify_incoming: bool = True,
        lazy: bool = False,
    ) -> None:
        self._keyring = keyring
        self._lazy = lazy
        """A push/pull's node states stay encoded (:class:`LazyStates`) for the core to decode
        in slices."""
        self._limits = limits
        self._require_encryption = bool(keyring) and verify_incoming
        self._frame: bytearray | None = None
        self._plain: _PlainStreamParser | None = None
        self._received = 0
        self._result: StreamMessage | None = None
        self._error: MalformedPacket | None = None
        self.encrypted = False
        self.compressed = False
        self.message_type: int | None = None

    @property
    def done(self) -> bool:
        """True once a complete message has been read."""
        return self._result is not None

    @property
    def result(self) -> StreamMessage | None:
        return self._result

    def feed(self, data: bytes | bytearray | memoryview) -> StreamMessage | None:
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error  # a failed stream stays failed
        try:
            return self._feed(bytes(data))
        except MalformedPacket as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes) -> StreamMessage | None:
        if not data:
            return None
        self._received += len(data)
        if self._received > self._limits.max_stream_size + STREAM_FRAME_HEADER_SIZE:
            raise MalformedPacket(REASON_TOO_LARGE, f"stream over {self._limits.max_stream_size}")
        if self._frame is None and self._plain is None:
            first = data[0]
            self.message_type = first
            if first == MessageType.ENCRYPT:
                if not self._keyring:
                    raise MalformedPacket(
                        REASON_NOT_ENCRYPTED,
                        "Remote state is encrypted and encryption is not configured",
                    )
                self._frame = bytearray()
                self.encrypted = True
            else:
                if self._require_encryption:
                    raise MalformedPacket(
                        REASON_NOT_ENCRYPTED,
                        "Encryption is configured but remote state is not encrypted",
                    )
                if first == MessageType.COMPRESS:
                    self.compressed = True
                self._plain = _PlainStreamParser(
                    first, self._limits, self._limits.max_stream_decompressed, self._lazy
                )
                data = data[1:]
        if self._frame is not None:
            self._frame += data
            self._result = self._try_frame()
        else:
            assert self._plain is not None
            self._result = self._plain.feed(data)
        return self._result

    def _try_frame(self) -> StreamMessage | None:
        frame = self._frame
        assert frame is not None and self._keyring is not None
        if len(frame) < STREAM_FRAME_HEADER_SIZE:
            return None
        (size,) = struct.unpack_from(">I", frame, 1)
        if size > self._limits.max_stream_size:
            raise MalformedPacket(REASON_TOO_LARGE, f"encrypted frame of {size} bytes")
        if len(frame) < STREAM_FRAME_HEADER_SIZE + size:
            return None
        header = bytes(frame[:STREAM_FRAME_HEADER_SIZE])
        sealed = bytes(frame[STREAM_FRAME_HEADER_SIZE : STREAM_FRAME_HEADER_SIZE + size])
        plain = self._keyring.decrypt(sealed, aad=header)
        if not plain:
            raise MalformedPacket(REASON_TRUNCATED, "empty encrypted stream")
        if plain[0] == MessageType.COMPRESS:
            self.compressed = True
        self.message_type = plain[0]
        return _parse_complete_stream(plain, self._limits, self._limits.max_stream_decompressed,
                                      self._lazy)

    def feed_eof(self) -> StreamMessage:
        """The peer closed: return the message, or raise ``MalformedPacket("truncated")``."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise MalformedPacket(REASON_TRUNCATED, f"stream closed after {self._received} bytes")
        return self._result


def decode_stream(
    data: bytes,
    keyring: Keyring | None = None,
    *,
    limits: CodecLimits = DEFAULT_LIMITS,
    verify_incoming: bool = True,
    lazy: bool = False,
) -> StreamMessage:
    """Decode a whole captured stream (everything one side wrote) in one call (``lazy``: as
    :class:`StreamReader`'s)."""
    reader = StreamReader(keyring, limits=limits, verify_incoming=verify_incoming, lazy=lazy)
    reader.feed(data)
    return reader.feed_eof()
