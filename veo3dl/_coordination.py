"""Sharing a bearer token and rate-limit pauses between download workers.

The design choice: the parent process runs a small **coordinator** — a
thread serving a Unix socket (``multiprocessing.connection``, a random
authkey) — and every worker process keeps one connection to it.

* **Tokens.**  Workers hold the current token in memory.  A worker refused
  with 401 asks for a token other than the one refused; the coordinator
  renews once (single flight, through the parent's session cookie) and
  pushes the new token to every worker.  So a token that expires mid-batch
  costs one session request, not one per worker.
* **Pauses.**  A worker that gets a 429 announces ``pause(host, seconds)``;
  the coordinator pushes it to every worker, whose next request to that
  host waits it out.  Other hosts are unaffected (the signed-URL fallback
  goes on while the api host is paused).

Pushes, not polls: a request costs no extra round trip.  Tokens travel over
the socket only, in memory; never in a file, a job or a log.  Workers reach
the coordinator only if given its address and key, which travel inside the
jobs' (repr-hidden) access spec.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import attrs

from veo3dl._logging import get_logger
from veo3dl._tokens import TokenSource
from veo3dl.exceptions import TokenExpired, Veo3dlError

__all__ = ["Coordinator", "CoordinatorAddress", "CoordinatorLink"]

_log = get_logger(__name__)
_REPLY_TIMEOUT = 120.0


@attrs.frozen(repr=False)
class CoordinatorAddress:
    """Where a worker reaches the coordinator, and the key that lets it in."""

    address: str
    authkey: bytes

    def __repr__(self) -> str:
        return "CoordinatorAddress(address=..., authkey=***)"


class Coordinator:
    """Parent side: serves tokens and pauses to every connected worker.

    *tokens* renews through the parent's session (single flight).  Start it
    with :meth:`start`; :meth:`close` stops the threads and closes every
    connection (workers then fall back to renewing on their own).
    """

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens
        self._authkey = secrets.token_bytes(32)
        self._listener = Listener(family="AF_UNIX", authkey=self._authkey)
        self._lock = threading.Lock()
        self._peers: dict[Connection, threading.Lock] = {}
        self._pauses: dict[str, float] = {}  # host -> wall-clock end of the pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="veo3dl-coordinator", daemon=True)
        self.renewals = 0

    @property
    def address(self) -> CoordinatorAddress:
        """What workers need to connect."""
        return CoordinatorAddress(str(self._listener.address), self._authkey)

    def start(self) -> Coordinator:
        """Begin accepting workers."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; never blocks for long."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            peers = list(self._peers)
            self._peers.clear()
        for conn in peers:
            conn.close()
        if self._thread.is_alive():
            # Closing a listening socket does not wake a thread blocked in
            # accept(); a bare connection does (its handshake fails at once).
            # Never a handshaking Client(): if the thread has just left the
            # loop, nobody would answer it.
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as nudge:
                nudge.connect(str(self._listener.address))
            self._thread.join(5.0)
        self._listener.close()

    def __enter__(self) -> Coordinator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()
            except (OSError, EOFError):
                if self._stop.is_set():
                    return
                continue
            except Exception as error:  # noqa: BLE001 - a peer with the wrong key: drop it, keep serving
                if self._stop.is_set():
                    return
                _log.warning("coordinator_refused_peer", error=repr(error))
                continue
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    return
                self._peers[conn] = threading.Lock()
                pauses = dict(self._pauses)
            threading.Thread(
                target=self._serve, args=(conn, pauses), name="veo3dl-coordinator-peer", daemon=True
            ).start()

    def _serve(self, conn: Connection, pauses: dict[str, float]) -> None:
        try:
            for host, until in pauses.items():
                self._send(conn, ("pause", host, until))
            while True:
                message = conn.recv()
                if message[0] == "token":
                    self._send(conn, self._token_reply(message[1], message[2]))
                elif message[0] == "pause":
                    self._pause(message[1], float(message[2]))
        except (EOFError, OSError):
            pass
        finally:
            with self._lock:
                self._peers.pop(conn, None)
            conn.close()

    def _token_reply(self, request_id: int, stale: str | None) -> tuple[Any, ...]:
        try:
            token = self._tokens.get() if stale is None else self._tokens.refresh(stale)
        except Veo3dlError as error:
            return ("error", request_id, error)
        renew_at = getattr(self._tokens, "renew_at", None)
        if stale is not None and token != stale:
            self.renewals += 1
            self._broadcast(("token", None, token, renew_at))
        return ("token", request_id, token, renew_at)

    def _pause(self, host: str, seconds: float) -> None:
        until = time.time() + seconds
        with self._lock:
            if until <= self._pauses.get(host, 0.0):
                return
            self._pauses[host] = until
        _log.info("host_paused", host=host, seconds=round(seconds, 3))
        self._broadcast(("pause", host, until))

    def _broadcast(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            peers = list(self._peers)
        for conn in peers:
            self._send(conn, message)

    def _send(self, conn: Connection, message: tuple[Any, ...]) -> None:
        with self._lock:
            lock = self._peers.get(conn)
        if lock is None:
            return
        try:
            with lock:
                conn.send(message)
        except (OSError, ValueError):
            pass  # the worker is gone; its serving thread cleans up


class CoordinatorLink:
    """Worker side: a :class:`~veo3dl._tokens.TokenSource` and host gate backed by the coordinator.

    *fallback* builds a process-local token source, used if the coordinator
    cannot be reached (the parent is shutting down).
    """

    def __init__(self, address: CoordinatorAddress, fallback: Callable[[], TokenSource]) -> None:
        self._address = address
        self._fallback_factory = fallback
        self._fallback: TokenSource | None = None
        self._cond = threading.Condition()
        self._token: str | None = None
        self._renew_at: float | None = None
        self._replies: dict[int, tuple[Any, ...]] = {}
        self._pauses: dict[str, float] = {}
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._conn: Connection | None = None
        self._pid = os.getpid()
        try:
            self._conn = Client(address.address, family="AF_UNIX", authkey=address.authkey)
        except (OSError, EOFError, ValueError, AuthenticationError) as error:
            _log.warning("coordinator_unreachable", error=str(error))
            return
        threading.Thread(target=self._receive, name="veo3dl-coordinator-link", daemon=True).start()

    def _receive(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while True:
                message = conn.recv()
                with self._cond:
                    if message[0] == "pause":
                        _, host, until = message
                        self._pauses[host] = max(until, self._pauses.get(host, 0.0))
                    elif message[0] == "token":
                        _, request_id, self._token, self._renew_at = message
                        if request_id is not None:
                            self._replies[request_id] = ("token", self._token)
                    else:
                        _, request_id, error = message
                        self._replies[request_id] = ("error", error)
                    self._cond.notify_all()
        except (EOFError, OSError):
            with self._cond:
                self._conn = None
                self._cond.notify_all()

    def _local(self) -> TokenSource:
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return self._fallback

    def _request(self, stale: str | None) -> str:
        with self._cond:
            conn = self._conn
            if conn is None:
                source = self._local()
                return source.get() if stale is None else source.refresh(stale)
            self._next_id += 1
            request_id = self._next_id
        with self._send_lock:
            try:
                conn.send(("token", request_id, stale))
            except (OSError, ValueError):
                source = self._local()
                return source.get() if stale is None else source.refresh(stale)
        deadline = time.monotonic() + _REPLY_TIMEOUT
        with self._cond:
            while request_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._conn is None:
                    raise TokenExpired("the parent process did not answer a token request in time")
                self._cond.wait(left)
            kind, value = self._replies.pop(request_id)
        if kind == "error":
            assert isinstance(value, BaseException)
            raise value
        assert isinstance(value, str)
        return value

    # TokenSource
    def get(self) -> str:
        """The shared token (asking the coordinator the first time, and when it is due)."""
        with self._cond:
            due = self._renew_at is not None and time.time() >= self._renew_at
            if self._token is not None and not due:
                return self._token
        return self._request(None)

    def refresh(self, stale: str) -> str:
        """A token other than *stale*: pushed already by another worker's renewal, or asked for."""
        with self._cond:
            if self._token is not None and self._token != stale:
                return self._token
        return self._request(stale)

    def paused_until(self, host: str) -> float:
        """Wall-clock end of *host*'s pause as this worker knows it (0: none)."""
        with self._cond:
            return self._pauses.get(host, 0.0)

    # HostGate
    def wait(self, host: str) -> None:
        """Sleep out a pause any worker announced for *host*."""
        while True:
            with self._cond:
                left = self._pauses.get(host, 0.0) - time.time()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))

    def pause(self, host: str, seconds: float) -> None:
        """Pause *host* here now and tell every other worker."""
        with self._cond:
            self._pauses[host] = max(time.time() + seconds, self._pauses.get(host, 0.0))
            conn = self._conn
        if conn is not None:
            with self._send_lock:
                try:
                    conn.send(("pause", host, seconds))
                except (OSError, ValueError):
                    pass
