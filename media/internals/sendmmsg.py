"""The datagrams the forwarding senders build in one event loop iteration, sent together with
libc's ``sendmmsg`` (one system call per UDP socket and iteration instead of one per packet).

The fan-out hands a frame to every viewer's sender in one call; the senders' tasks then run one
after another in the next iteration of the loop, and each builds its frame's packets straight
into a slot of this module's arena (header, payload, libsrtp's ``srtp_protect`` in place:
``srtp_send``). The first packet of an iteration schedules :meth:`DatagramBatch.flush` with
``call_soon``, which runs after every sender woken for that frame, and sends each run of packets
for the same socket with one ``sendmmsg``: on the node's shared UDP port (``udp_mux``) one call
for all viewers, on aioice's per-connection sockets one per viewer and iteration.

libc's ``sendmmsg`` through cffi in ABI mode (``ffi.dlopen(None)``: no compiler; cffi is
installed as pylibsrtp's dependency); ``struct msghdr`` as Linux's (checked by size at import).
:data:`AVAILABLE` is False elsewhere, and the sender keeps its one ``sendto`` per packet.

What a send cannot do now goes the way it went before: a socket whose transport still holds
queued datagrams (uvloop's own buffer) or one the kernel answers EAGAIN/ENOBUFS gets the rest
through the transport's ``sendto`` (which queues), in order.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
from typing import Any

logger = logging.getLogger(__name__)

SLOTS = 512  # packets one iteration may hold before a flush of its own
SLOT_BYTES = 1536  # a packet with its SRTP trailer (the senders' payloads are MTU-sized)

_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""

_ffi: Any = None
_lib: Any = None
AVAILABLE = False
try:
    if sys.platform.startswith("linux") and struct.calcsize("P") == 8:
        from cffi import FFI

        _ffi = FFI()
        _ffi.cdef(_CDEF)
        _lib = _ffi.dlopen(None)
        AVAILABLE = (
            _ffi.sizeof("struct msghdr") == 56
            and _ffi.sizeof("struct mmsghdr") == 64
            and _lib.sendmmsg is not None
        )
except (ImportError, OSError, AttributeError):  # pragma: no cover - no cffi, or no libc's
    AVAILABLE = False

_RETRY_LATER = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def sockaddr(addr: tuple[Any, ...]) -> Any:
    """A ``struct sockaddr_in``/``sockaddr_in6`` (cffi ``char[]``) for an (ip, port) literal;
    None when the address is not a numeric IPv4/IPv6 address."""
    host, port = addr[0], addr[1]
    try:
        packed = socket.inet_pton(socket.AF_INET, host)
        raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + packed + bytes(8)
    except (OSError, TypeError):
        try:
            packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        except (OSError, TypeError, AttributeError):
            return None
        scope = addr[3] if len(addr) > 3 else 0
        raw = (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", port, 0)
            + packed
            + struct.pack("=I", scope)
        )
    return _ffi.new("char[]", raw)


def socket_fd(transport: Any) -> int | None:
    """The file descriptor of an asyncio/uvloop datagram transport's socket, or None."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        fd = sock.fileno()
    except (OSError, AttributeError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class DatagramBatch:
    """One event loop's arena of packets waiting for this iteration's ``sendmmsg`` calls.

    Slot ``i``'s bytes are ``arena[i * SLOT_BYTES:]``; its ``mmsghdr`` points at them through
    its own ``iovec``. A sender fills a slot (:meth:`slot`, then :meth:`commit` with the
    protected length and its destination), and :meth:`flush` sends runs of slots per socket.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.msgs = _ffi.new("struct mmsghdr[]", SLOTS)
        self.iovs = _ffi.new("struct iovec[]", SLOTS)
        self.arena = _ffi.new("char[]", SLOTS * SLOT_BYTES)
        self.buffer = _ffi.buffer(self.arena)
        # Per slot: its header (to set the destination), and the address of its bytes.
        self.headers = [self.msgs[i].msg_hdr for i in range(SLOTS)]
        self.pointers = [self.arena + i * SLOT_BYTES for i in range(SLOTS)]
        for i in range(SLOTS):
            self.iovs[i].iov_base = self.pointers[i]
            self.headers[i].msg_iov = self.iovs + i
            self.headers[i].msg_iovlen = 1
        self.count = 0
        self.fds = [-1] * SLOTS
        # Per slot: (transport, addr) for a send that falls back to sendto.
        self.targets: list[tuple[Any, Any] | None] = [None] * SLOTS
        self.scheduled = False
        # Packets the kernel refused (an error other than "try again"); sendmmsg calls made and
        # the packets they sent; packets that went through a transport's sendto instead.
        self.dropped = 0
        self.calls = 0
        self.packets = 0
        self.fallbacks = 0

    def commit(
        self, i: int, length: int, fd: int, name: Any, name_length: int, target: tuple[Any, Any]
    ) -> None:
        """Slot ``i`` holds ``length`` bytes for ``name`` on socket ``fd``; the next slot is
        ``i + 1`` (the caller flushes first when ``i + 1 == SLOTS``)."""
        self.iovs[i].iov_len = length
        header = self.headers[i]
        header.msg_name = name
        header.msg_namelen = name_length
        self.fds[i] = fd
        self.targets[i] = target
        self.count = i + 1
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every slot filled since the last flush: one ``sendmmsg`` per run of one socket."""
        self.scheduled = False
        n, self.count = self.count, 0
        fds = self.fds
        start = 0
        while start < n:
            fd = fds[start]
            end = start + 1
            while end < n and fds[end] == fd:
                end += 1
            self._send_run(fd, start, end)
            start = end
        targets = self.targets
        for i in range(n):
            targets[i] = None

    def _send_run(self, fd: int, start: int, end: int) -> None:
        target = self.targets[start]
        assert target is not None
        transport = target[0]
        if transport.is_closing():
            return  # as its sendto would: nothing goes out on a closed transport
        if transport.get_write_buffer_size():
            self._fall_back(start, end)  # after what uvloop still holds, in order
            return
        msgs = self.msgs
        while start < end:
            self.calls += 1
            sent = _lib.sendmmsg(fd, msgs + start, end - start, 0)
            if sent > 0:
                start += sent
                self.packets += sent
                continue
            err = _ffi.errno
            if err == errno.EINTR:
                continue
            if err in _RETRY_LATER:
                self._fall_back(start, end)
                return
            # The first message failed (e.g. EPERM, EMSGSIZE, ENETUNREACH): skip it, as a
            # sendto would have dropped it, and go on with the rest.
            self.dropped += 1
            logger.debug("sendmmsg on fd %d: %s", fd, errno.errorcode.get(err, err))
            start += 1

    def _fall_back(self, start: int, end: int) -> None:
        """The transport's own sendto for slots [start, end) (it queues what cannot go now)."""
        buffer, iovs, targets = self.buffer, self.iovs, self.targets
        for i in range(start, end):
            target = targets[i]
            assert target is not None
            offset = i * SLOT_BYTES
            self.fallbacks += 1
            target[0].sendto(buffer[offset : offset + iovs[i].iov_len], target[1])


_BATCHES: dict[asyncio.AbstractEventLoop, DatagramBatch] = {}


def batch_for(loop: asyncio.AbstractEventLoop) -> DatagramBatch:
    """The running loop's batch (one per loop; a closed loop's is dropped)."""
    batch = _BATCHES.get(loop)
    if batch is None:
        for old in [other for other in _BATCHES if other.is_closed()]:
            del _BATCHES[old]
        batch = _BATCHES[loop] = DatagramBatch(loop)
    return batch
