"""The standard library's private challenge/response primitives, under their names.

CPython 3.12 split the authentication handshake into small private helpers
of ``multiprocessing.connection``; its own tests (and code that speaks the
protocol from the other side, such as servers written in other languages
and their Python test harnesses) call them directly::

    _CHALLENGE, _WELCOME, _FAILURE         the handshake's markers
    _create_response(authkey, message)     the answer to a challenge message
    _verify_challenge(authkey, message, response)
                                           check an answer, AuthenticationError if wrong
    _get_digest_name_and_payload(message)  b"{sha256}..." -> ("sha256", b"...")

They are pure functions over bytes: they compute what the protocol says,
legacy unprefixed HMAC-MD5 included (a message of 16 or 20 bytes is a
Python <= 3.11 one).  Whether MD5 is *accepted* is not theirs to decide:
``deliver_challenge``/``answer_challenge`` (``_handshake``) refuse it.
"""

from __future__ import annotations

from ._exceptions import AuthenticationError

__all__ = [
    "_CHALLENGE",
    "_WELCOME",
    "_FAILURE",
    "_ALLOWED_DIGESTS",
    "_MAX_DIGEST_LEN",
    "_MD5ONLY_MESSAGE_LENGTH",
    "_MD5_DIGEST_LEN",
    "_LEGACY_LENGTHS",
    "_get_digest_name_and_payload",
    "_create_response",
    "_verify_challenge",
]

_CHALLENGE = b"#CHALLENGE#"
_WELCOME = b"#WELCOME#"
_FAILURE = b"#FAILURE#"

#: Digests a prefixed message may name (MD5 only ever appears unprefixed in practice).
_ALLOWED_DIGESTS = frozenset({b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"})
_MAX_DIGEST_LEN = max(len(name) for name in _ALLOWED_DIGESTS)
#: A Python <= 3.11 challenge: 20 random bytes, no digest name.
_MD5ONLY_MESSAGE_LENGTH = 20
#: A Python <= 3.11 answer: a bare HMAC-MD5.
_MD5_DIGEST_LEN = 16
_LEGACY_LENGTHS = (_MD5ONLY_MESSAGE_LENGTH, _MD5_DIGEST_LEN)


def _get_digest_name_and_payload(message: bytes) -> tuple[str, bytes]:
    """Split ``b"{name}payload"`` into ``("name", b"payload")``.

    A legacy message (16 or 20 bytes, no prefix) gives ``("", message)``:
    the caller is to use unprefixed HMAC-MD5.  Anything else -- no prefix,
    an unknown digest -- raises ``AuthenticationError``.
    """
    if len(message) in _LEGACY_LENGTHS:
        # Every prefixed message is longer than both legacy forms.
        return "", message
    if message[:1] == b"{":
        end = message.find(b"}", 1, _MAX_DIGEST_LEN + 2)
        if end > 0 and message[1:end] in _ALLOWED_DIGESTS:
            return message[1:end].decode("ascii"), message[end + 1 :]
    raise AuthenticationError(
        f"unsupported message length, missing digest prefix, or unsupported digest: {message[:40]!r}"
    )


def _mac(authkey: bytes, message: bytes, digest: str) -> bytes:
    import hmac  # deferred: only processes that authenticate pay for OpenSSL's hashes

    return hmac.digest(authkey, message, digest)


def _create_response(authkey: bytes, message: bytes) -> bytes:
    """The answer to the challenge ``message`` (what follows ``_CHALLENGE``).

    The HMAC covers the whole message, its ``{digest}`` prefix included, and
    carries the same prefix; a legacy message is answered with a bare
    HMAC-MD5, or with a prefixed HMAC-SHA256 where MD5 is unavailable (FIPS).
    """
    digest = _get_digest_name_and_payload(message)[0]
    if not digest:
        try:
            return _mac(authkey, message, "md5")
        except ValueError:
            digest = "sha256"
    return b"{" + digest.encode("ascii") + b"}" + _mac(authkey, message, digest)


def _verify_challenge(authkey: bytes, message: bytes, response: bytes) -> None:
    """Check that ``response`` answers ``message`` for ``authkey``; ``AuthenticationError`` if not.

    The digest is the one ``response`` names (unprefixed: legacy MD5).
    """
    import hmac

    digest, mac = _get_digest_name_and_payload(response)
    digest = digest or "md5"
    try:
        expected = _mac(authkey, message, digest)
    except ValueError:
        raise AuthenticationError(f"digest {digest!r} is unsupported here") from None
    if len(expected) != len(mac):
        raise AuthenticationError(f"expected a {digest!r} digest of {len(expected)} bytes, got {len(mac)}")
    if not hmac.compare_digest(expected, mac):
        raise AuthenticationError("digest received was wrong")
