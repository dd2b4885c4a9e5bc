"""The HTTP/1.1 machinery: listening sockets, connection threads, writing answers.

One :class:`HttpServer` listens on one loopback port per role, accepts on a
single thread and serves each connection on its own thread with keep-alive.
Answers go out with headers and (the start of) the body in one ``sendall``
and ``TCP_NODELAY`` set: written separately, Nagle's algorithm and delayed
ACKs make every keep-alive request wait tens of milliseconds.

Stopping never hangs: the accept loop is woken through a socket pair, open
connections are shut down (which wakes threads blocked reading or writing),
pauses wait on the stop event, and threads are joined against a deadline.
"""

from __future__ import annotations

import contextlib
import http
import selectors
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from veo3dl.testing._http import Delivery, Request, Response, google_error

__all__ = ["HttpServer"]

_IDLE_TIMEOUT = 120.0
_MAX_DRAIN = 1 << 20


def _limit(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The first *limit* bytes of *chunks*."""
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        piece = chunk[:left]
        left -= len(piece)
        if piece:
            yield piece


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """*chunks* re-cut into pieces of *size* bytes (the last may be shorter)."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        start = 0
        while len(pending) - start >= size:
            yield bytes(pending[start : start + size])
            start += size
        del pending[:start]
    if pending:
        yield bytes(pending)


class _Handler(BaseHTTPRequestHandler):
    """Parses requests with the stdlib, answers through :meth:`_write`."""

    protocol_version = "HTTP/1.1"
    server_version = "FlowEmulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT

    def __init__(self, conn: socket.socket, address: Any, host: HttpServer, role: str) -> None:
        self._host = host
        self._role = role
        super().__init__(conn, address, cast(Any, host))

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry API keys and URL signatures: never print them.
        return

    def do_GET(self) -> None:
        """Answer a GET."""
        self._answer()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def _answer(self) -> None:
        self._drain_body()
        request = Request(
            role=self._role,
            method=self.command,
            target=self.path,
            headers={key.lower(): value for key, value in self.headers.items()},
        )
        try:
            response = self._host.respond(request)
        except Exception:  # noqa: BLE001 (an endpoint bug must become a 500, not kill the server)
            self._host.record_error(traceback.format_exc())
            response = google_error(500, "Internal error encountered.")
        self._write(response)

    def _drain_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:  # a body we cannot frame: drop the connection after answering
            length = _MAX_DRAIN + 1
        if length > _MAX_DRAIN or length < 0:
            self.close_connection = True
        elif length > 0:
            self.rfile.read(length)

    def _write(self, response: Response) -> None:
        if response.delay > 0 and not self._host.wait(response.delay):
            self.close_connection = True
            return
        if response.delivery is Delivery.RESET:
            # Linger 0: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        length = response.content_length
        lines = [f"HTTP/1.1 {response.status} {_phrase(response.status)}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        lines += [f"Content-Length: {length}", f"Date: {formatdate(usegmt=True)}"]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        send = length
        if response.head_only:
            send = 0
        elif response.delivery is Delivery.TRUNCATE:
            send = length // 2
        pieces = _limit(response.chunks(), send) if send else iter(())
        if response.delivery is Delivery.DRIP:
            pieces = _rechunk(pieces, response.drip_chunk)
        sent = 0
        first = next(pieces, b"")
        self.connection.sendall(head + first)
        sent += len(first)
        for piece in pieces:
            if response.delivery is Delivery.DRIP and not self._host.wait(response.drip_delay):
                break
            self.connection.sendall(piece)
            sent += len(piece)
        if sent != send or response.delivery is Delivery.TRUNCATE:
            # Short of the declared length: closing is the only honest end.
            self.close_connection = True


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class HttpServer:
    """Loopback HTTP/1.1 listeners, one per role, answering through *respond*."""

    def __init__(
        self, roles: Iterable[str], respond: Callable[[Request], Response], *, first_port: int = 0
    ) -> None:
        self.respond = respond
        self._roles = tuple(roles)
        self._first_port = first_port
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._accepted = 0
        self._errors: list[str] = []
        self._listeners: dict[str, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread: threading.Thread | None = None

    @property
    def ports(self) -> dict[str, int]:
        """The port of each role."""
        return {role: sock.getsockname()[1] for role, sock in self._listeners.items()}

    @property
    def accepted(self) -> int:
        """How many TCP connections have been accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions raised while answering (each became a 500)."""
        with self._lock:
            return list(self._errors)

    def record_error(self, text: str) -> None:
        """Keep the traceback of an endpoint that raised."""
        with self._lock:
            self._errors.append(text)

    def wait(self, seconds: float) -> bool:
        """Pause *seconds*; ``False`` when the server began stopping meanwhile."""
        return not self._stopping.wait(seconds)

    def start(self) -> None:
        """Bind every role to an ephemeral loopback port and start accepting."""
        try:
            for offset, role in enumerate(self._roles):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listeners[role] = sock
                if self._first_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", self._first_port + offset if self._first_port else 0))
                sock.listen(128)
                sock.setblocking(False)
        except OSError:
            self._close_listeners()
            raise
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="flow-emulator-accept", daemon=True
        )
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            for role, sock in self._listeners.items():
                selector.register(sock, selectors.EVENT_READ, role)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data is None:
                        return
                    try:
                        conn, address = cast(socket.socket, key.fileobj).accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        if self._stopping.is_set():
                            return
                        continue
                    self._spawn(conn, address, key.data)

    def _spawn(self, conn: socket.socket, address: Any, role: str) -> None:
        conn.setblocking(True)
        thread = threading.Thread(
            target=self._serve,
            args=(conn, address, role),
            name=f"flow-emulator-{role}",
            daemon=True,
        )
        with self._lock:
            self._accepted += 1
            self._connections[conn] = thread
        thread.start()

    def _serve(self, conn: socket.socket, address: Any, role: str) -> None:
        try:
            _Handler(conn, address, self, role)
        except OSError:
            pass  # the client went away, or stop() shut the socket
        except Exception:  # noqa: BLE001 (kept for errors; the connection just ends)
            self.record_error(traceback.format_exc())
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()
            with self._lock:
                self._connections.pop(conn, None)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, join threads (bounded by *timeout*)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        self._close_listeners()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()

    def _close_listeners(self) -> None:
        for sock in self._listeners.values():
            sock.close()
