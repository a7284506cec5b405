"""Mutual authentication of a fresh connection: HMAC challenge and response.

One direction of the handshake (``deliver_challenge`` on one side,
``answer_challenge`` on the other)::

    deliverer                                   answerer
    ── b"#CHALLENGE#{sha256}" + 40 random bytes ──>
    <── b"{sha256}" + HMAC-SHA256(authkey, b"{sha256}" + random) ──
    ── b"#WELCOME#"  (or b"#FAILURE#", then AuthenticationError) ──>

``Listener.accept`` delivers then answers; ``Client`` answers then
delivers, so each side proves to the other that it holds the key.  The
format is the standard library's since Python 3.12, so this library and
``multiprocessing`` >= 3.12 authenticate each other.

Choices, and why:

* Only named digests are accepted.  A peer of Python < 3.12 (or
  ``multiprocess`` < 0.70.16) speaks unnamed HMAC-MD5; it is told apart by
  the missing ``{digest}`` prefix and refused with an ``AuthenticationError``
  that says so, rather than downgrading to MD5.
* Every handshake message is read with a 256-byte limit: an oversized or
  malformed header fails at once, without reading (or buffering) what an
  unauthenticated peer sends, and nothing it sends is ever unpickled.
* With a timeout, the deadline covers each whole message, header and
  payload: a peer that sends part of one and stalls is cut off like one
  that sends nothing (reads then never ask for more than the message has
  left, so nothing past it is consumed).
* The empty key ``b""`` is a key like any other, on both sides.
"""

from __future__ import annotations

import os
import time

# The handshake's markers, defined once, beside the stdlib's primitives of the same protocol.
from ._challenge_response import _CHALLENGE as CHALLENGE
from ._challenge_response import _FAILURE as FAILURE
from ._challenge_response import _WELCOME as WELCOME
from ._connection import _fd_ready
from ._entropy import prepare as _prepare_random_bytes
from ._entropy import random_bytes
from ._exceptions import AuthenticationError
from ._framing import LONG_FOLLOWS, SHORT_HEADER_SIZE, BadMessageLength, long_size, short_size

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = ["deliver_challenge", "answer_challenge", "prepare", "CHALLENGE", "WELCOME", "FAILURE", "MESSAGE_LENGTH"]

#: Random bytes in a challenge (after the digest name).
MESSAGE_LENGTH = 40
# Shortest random part we answer: what Python 3.11 and older sent.
_MIN_CHALLENGE_LENGTH = 20
# No honest handshake message comes close to this.
_MAX_HANDSHAKE_MESSAGE = 256

_DIGEST = "sha256"
# Digests we answer when a peer's challenge names them (the ones the
# standard library may ask for, minus MD5).
_ANSWERABLE_DIGESTS = frozenset({"sha256", "sha384", "sha3_256", "sha3_384"})
_MAX_DIGEST_NAME = max(len(name) for name in _ANSWERABLE_DIGESTS) + 2


def _check_authkey(authkey: Any) -> None:
    if not isinstance(authkey, bytes):
        raise ValueError(f"Authkey must be bytes, not {type(authkey).__name__}")


def _hmac(authkey: bytes, message: bytes, digest: str) -> bytes:
    import hmac  # deferred: only processes that authenticate pay for OpenSSL's hashes

    return hmac.digest(authkey, message, digest)


def _split_digest_name(message: bytes) -> tuple[Optional[str], bytes]:
    """``b"{name}payload"`` -> ``("name", b"payload")``; no name -> ``(None, message)``."""
    if message[:1] == b"{":
        end = message.find(b"}", 1, _MAX_DIGEST_NAME + 1)
        if end > 0:
            try:
                return message[1:end].decode("ascii"), message[end + 1 :]
            except UnicodeDecodeError:
                pass
    return None, message


def _receive(connection: Any, timeout: Optional[float], what: str) -> bytes:
    """One handshake message; ``AuthenticationError`` for anything but a short message."""
    try:
        if timeout is None:
            return connection.recv_bytes(_MAX_HANDSHAKE_MESSAGE)
        return recv_bytes_by(connection, time.monotonic() + timeout, _MAX_HANDSHAKE_MESSAGE)
    except TimeoutError:
        raise AuthenticationError(f"timed out after {timeout:g} seconds waiting for {what}") from None
    except (EOFError, ConnectionResetError) as exc:
        raise AuthenticationError(f"connection closed while waiting for {what}") from exc
    except BadMessageLength as exc:
        raise AuthenticationError(
            f"protocol error: {what} is not a handshake message ({exc}; "
            f"handshake messages are at most {_MAX_HANDSHAKE_MESSAGE} bytes)"
        ) from exc


def recv_bytes_by(connection: Any, deadline: float, maxlength: int) -> bytes:
    """The next message of ``connection``, read whole by ``deadline`` (a ``time.monotonic()`` value).

    The frame ``Connection.recv_bytes`` reads, read here from the descriptor
    in pieces, waiting for each with the time that is left; for short
    messages from peers that must not hold the reader (the handshake, a
    server's first request).  Raises ``TimeoutError`` once the deadline has
    passed, ``BadMessageLength`` for a malformed header or one announcing
    more than ``maxlength`` bytes (nothing more is read: the caller must
    close the connection, whose stream is out of step, as after a timeout),
    ``EOFError`` at end of file.
    """
    fd = connection.fileno()
    header = _read_before(fd, SHORT_HEADER_SIZE, deadline, at_message_start=True)
    size = short_size(header)
    if size == LONG_FOLLOWS:
        size = long_size(_read_before(fd, 8, deadline))
    if size > maxlength:
        raise BadMessageLength(f"a message of {size} bytes was announced")
    return _read_before(fd, size, deadline)


def _read_before(fd: int, count: int, deadline: float, at_message_start: bool = False) -> bytes:
    """Exactly ``count`` bytes from ``fd``, or ``TimeoutError`` once ``deadline`` has passed."""
    data = b""
    while len(data) < count:
        left = deadline - time.monotonic()
        if left <= 0 or not _fd_ready(fd, left):
            raise TimeoutError("deadline passed")
        chunk = os.read(fd, count - len(data))  # ready: returns what is there, never blocks
        if not chunk:
            if at_message_start and not data:
                raise EOFError
            raise EOFError("got end of file during message")
        data += chunk
    return data


def _send(connection: Any, data: bytes) -> None:
    try:
        connection.send_bytes(data)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise AuthenticationError("connection closed by the peer during authentication") from exc


def _preview(message: bytes) -> str:
    return repr(message[:24]) + ("..." if len(message) > 24 else "")


def prepare() -> None:
    """Load what a handshake needs (the hashes, the challenges' random source) now.

    For a listener, while it still has descriptors to load them with: one
    that ran out must still authenticate the peer it could accept, and the
    first client must not wait for OpenSSL to load (looking like a stalled
    peer meanwhile).
    """
    import hmac  # noqa: F401

    _prepare_random_bytes()


def deliver_challenge(
    connection: Any, authkey: bytes, digest_name: str = _DIGEST, *, timeout: Optional[float] = None
) -> None:
    """Challenge the peer to prove it holds ``authkey``.

    Sends a random challenge, checks the HMAC answer (with ``digest_name``,
    SHA-256 by default, as the standard library's 3.12+ parameter), and sends
    ``WELCOME`` or ``FAILURE``.  Raises ``AuthenticationError`` if the answer
    is wrong, malformed, too long, legacy MD5, missing (the peer closed), or
    (with ``timeout``) does not arrive within ``timeout`` seconds, and
    ``ValueError`` for a digest other than SHA-256, SHA-384, SHA3-256 or
    SHA3-384.
    """
    _check_authkey(authkey)
    if digest_name not in _ANSWERABLE_DIGESTS:
        raise ValueError(f"digest_name={digest_name!r} unsupported (use one of {sorted(_ANSWERABLE_DIGESTS)})")
    prefix = b"{" + digest_name.encode("ascii") + b"}"
    challenge = prefix + random_bytes(MESSAGE_LENGTH)
    _send(connection, CHALLENGE + challenge)
    response = _receive(connection, timeout, "the answer to our challenge")
    import hmac

    expected = prefix + _hmac(authkey, challenge, digest_name)
    if hmac.compare_digest(response, expected):
        _send(connection, WELCOME)
        return
    try:
        connection.send_bytes(FAILURE)
    except OSError:
        pass  # the peer may already be gone; the verdict stands either way
    name, _ = _split_digest_name(response)
    if name is None and len(response) == 16:
        raise AuthenticationError(
            "peer answered with a legacy HMAC-MD5 digest (Python < 3.12 multiprocessing?), which is not accepted"
        )
    raise AuthenticationError("digest received was wrong")


def answer_challenge(connection: Any, authkey: bytes, *, timeout: Optional[float] = None) -> None:
    """Prove to the peer that we hold ``authkey`` by answering its challenge.

    Raises ``AuthenticationError`` if the peer's message is not a valid
    challenge (malformed, too long, legacy MD5, an unsupported digest), if
    the peer rejects our answer, if it closes the connection, or (with
    ``timeout``) if a message does not arrive within ``timeout`` seconds.
    """
    _check_authkey(authkey)
    # A listener without an authkey never challenges: say so, since that
    # mismatch is the likeliest reason for a missing or unexpected message.
    message = _receive(connection, timeout, "the peer's challenge (a listener without an authkey sends none)")
    if not message.startswith(CHALLENGE):
        raise AuthenticationError(
            f"protocol error: expected a challenge, got {_preview(message)} (does the listener use no authkey?)"
        )
    challenge = message[len(CHALLENGE) :]
    name, payload = _split_digest_name(challenge)
    if name is None:
        raise AuthenticationError(
            "peer sent a legacy HMAC-MD5 challenge (Python < 3.12 multiprocessing?), which is not accepted"
        )
    if name not in _ANSWERABLE_DIGESTS:
        raise AuthenticationError(f"peer asked for an unsupported digest {name!r}")
    if len(payload) < _MIN_CHALLENGE_LENGTH:
        raise AuthenticationError("challenge too short")
    _send(connection, b"{" + name.encode("ascii") + b"}" + _hmac(authkey, challenge, name))
    reply = _receive(connection, timeout, "the peer's verdict on our answer")
    if reply != WELCOME:
        raise AuthenticationError("digest sent was rejected")
