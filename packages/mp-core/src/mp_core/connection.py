"""Connections between processes: ``Pipe``, ``Listener``/``Client``, ``wait``.

The stdlib-shaped face of ``multiprocessing.connection``; the work is done in
private modules, each with one job::

    _connection   Connection (framed messages over a descriptor), Pipe,
                  and pickling of connections to other processes
    _framing      the wire format: size headers, the blocking and non-blocking
                  writers, FrameReader (the read-ahead reader, for channels
                  with one reader: pool workers, manager streams)
    _io           the system calls under it (writev, reading in place)
    _handshake    deliver_challenge / answer_challenge: mutual HMAC-SHA256
                  authentication before anything else is read
    _challenge_response
                  the standard library's private primitives of that handshake
                  (_create_response, _verify_challenge...), by name
    _listener     Listener / Client (AF_UNIX, AF_INET), addresses, XML wrappers
    _wait         wait() over connections, sockets and process sentinels

Importing this module makes connections picklable (``reduction.register``),
which is what ``allow_connection_pickling()`` promises.
"""

from __future__ import annotations

# The stdlib module's namespace, re-exported (its __all__ is just four names).
from . import reduction

# The standard library's private handshake primitives (3.12+), which its
# tests and protocol peers call by these names.
from ._challenge_response import (  # noqa: F401
    _ALLOWED_DIGESTS,
    _CHALLENGE,
    _FAILURE,
    _LEGACY_LENGTHS,
    _MAX_DIGEST_LEN,
    _MD5_DIGEST_LEN,
    _MD5ONLY_MESSAGE_LENGTH,
    _WELCOME,
    _create_response,
    _get_digest_name_and_payload,
    _verify_challenge,
)
from ._connection import (  # noqa: F401
    BUFSIZE,
    Connection,
    Pipe,
    _ConnectionBase,
    rebuild_connection,
    reduce_connection,
)
from ._exceptions import AuthenticationError, BufferTooShort  # noqa: F401

# Beyond the stdlib: the wire format, for the other readers and writers of it.
from ._framing import (  # noqa: F401
    BadMessageLength,
    FrameReader,
    PayloadBuffer,
    message_header,
    write_message,
)
from ._handshake import (  # noqa: F401
    CHALLENGE,
    FAILURE,
    MESSAGE_LENGTH,
    WELCOME,
    answer_challenge,
    deliver_challenge,
)
from ._io import write_buffers  # noqa: F401  (beyond the stdlib: writes a message given as several buffers)
from ._listener import (  # noqa: F401
    CONNECTION_TIMEOUT,
    Client,
    ConnectionWrapper,
    Listener,
    SocketClient,
    SocketListener,
    XmlClient,
    XmlListener,
    _validate_family,
    _xml_dumps,
    _xml_loads,
    address_type,
    arbitrary_address,
    default_family,
    families,
)
from ._wait import wait  # noqa: F401

__all__ = ["Client", "Listener", "Pipe", "wait"]

_ForkingPickler = reduction.ForkingPickler
