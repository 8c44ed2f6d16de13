"""Who may talk to a socket: CURVE keys, the ZAP check of peers, and the loopback rule.

Every ZeroMQ socket specstream makes (a sender's, a receiver's, the ``zmq:``
sink's) is set up here, by :class:`SocketSecurity`.

CURVE
-----
ZeroMQ's CURVE mechanism (CurveZMQ: Curve25519 keys; every message is
encrypted and authenticated) with pyzmq's own tools.  Key pairs are in
ZeroMQ's certificate format (``zmq.auth.create_certificates``): ``NAME.key``
holds the public key, to give to the other side; ``NAME.key_secret`` holds
both keys and stays private (mode 0600).  ``specstream keygen DIR --name
NAME`` or :func:`create_key_pair` writes them.

A socket given ``allow`` (certificate files, directories of ``*.key`` files,
or z85 public keys) is a CURVE *server*: a ZAP handler
(``zmq.auth.thread.ThreadAuthenticator``, one per context, one ZAP domain per
socket) admits only the peers whose public keys are allowed, and counts the
others (:attr:`SocketSecurity.refused`).  A socket given ``curve_server`` (the
server's public key) is a CURVE *client* of that server.  Both need
``curve_secret``, this side's key pair.  The role does not depend on who
binds: usually the player binds and is the server, the sender connects.

The loopback rule
-----------------
A plain (not CURVE) socket whose endpoint another machine can reach is
refused unless ``insecure=True`` (:func:`check_endpoint`).  Local are
``ipc://``, ``inproc://`` and tcp on 127.0.0.0/8, ``::1``, ``localhost``
or a loopback interface (``tcp://lo:5556``); ``tcp://*``,
``tcp://0.0.0.0``, any other address, host name or interface is not.

``zmq`` is imported when keys are made or loaded, not with this module.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import stat
import tempfile
import threading
import time
from pathlib import Path

from .errors import InputError, ParameterError

__all__ = ["is_local", "check_endpoint", "create_key_pair", "load_key_pair", "load_public_key",
           "load_allowed_keys", "SocketSecurity", "open_socket"]

log = logging.getLogger("specstream")

_LOCAL_SCHEMES = ("ipc", "inproc")
_HOST_SCHEMES = ("tcp", "ws", "wss", "udp")      # transports with HOST:PORT endpoints
_IFF_LOOPBACK = 0x8                              # <net/if.h>
_Z85_KEY_LENGTH = 40                             # a 32-byte key in z85


# ============================================================ the loopback rule
def is_local(endpoint: str) -> bool:
    """True when only this machine can reach ``endpoint`` (bound or connected to)."""
    scheme, sep, address = endpoint.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _LOCAL_SCHEMES + _HOST_SCHEMES:
        return False
    if scheme in _LOCAL_SCHEMES:
        return True
    address = address.split("/", 1)[0]           # ws://HOST:PORT/PATH
    address = address.rpartition(";")[2]         # connect's SOURCE;PEER: the peer is where
    host = address.rpartition(":")[0] if ":" in address else address     # frames go
    return _is_loopback_host(host.strip("[]"))


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return _is_loopback_interface(host)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def _is_loopback_interface(name: str) -> bool:
    """``name`` is a loopback network interface (ZeroMQ binds ``tcp://lo:5556``)."""
    if not name or "/" in name or name in (".", ".."):
        return False
    net = Path("/sys/class/net")
    if not net.is_dir():                        # not Linux: the usual names
        return name in ("lo", "lo0")
    try:                                         # Linux: the interface's IFF_ flags, in hex
        return bool(int((net / name / "flags").read_text(), 16) & _IFF_LOOPBACK)
    except (OSError, ValueError):
        return False                             # no such interface: a host name


def check_endpoint(endpoint: str, *, bind: bool, curve: bool, insecure: bool = False):
    """Refuse a plain socket that another machine can reach (see the module docstring).

    Parameters
    ----------
    endpoint : str
        What the socket binds or connects to.
    bind : bool
        It binds (else connects); only the message depends on it.
    curve : bool
        The socket uses CURVE.
    insecure : bool
        Allow it anyway, unauthenticated and unencrypted.

    Raises :class:`~stream.errors.ParameterError`, one line naming both ways out.
    """
    if curve or insecure or is_local(endpoint):
        return
    where = (f"binding {endpoint} lets other machines reach the stream" if bind
             else f"connecting to {endpoint} takes the stream off this machine")
    raise ParameterError(f"{where}, unauthenticated and unencrypted: give curve_secret "
                         f"(CURVE keys, see 'specstream keygen') or set insecure to allow it")


# ====================================================================== keys
def _zmq_auth():
    """pyzmq's ``zmq.auth``, once we know its libzmq has CURVE."""
    import zmq
    import zmq.auth
    import zmq.utils.z85
    if not zmq.has("curve"):
        raise ParameterError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE: "
                             "install a pyzmq whose libzmq has it (the PyPI wheels do)")
    return zmq.auth


def create_key_pair(directory, name: str = "specstream", *,
                    overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new CURVE key pair in ZeroMQ's certificate format.

    Parameters
    ----------
    directory : str or Path
        Where to write (made if missing).
    name : str
        File name stem: ``NAME.key`` (public) and ``NAME.key_secret`` (secret).
    overwrite : bool
        Replace an existing pair (default: refuse).

    Returns the paths ``(public, secret)``.  The secret file is mode 0600 from
    the start: it is written in a private directory and then moved in place.
    """
    auth = _zmq_auth()
    if not name or "/" in name or os.sep in name or name.startswith("."):
        raise ParameterError(f"name={name!r}: use a plain file name, such as 'player'")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    if not overwrite and (public.exists() or secret.exists()):
        raise InputError(f"{public} or {secret} exists already: choose another name, or "
                         "remove them to replace the keys")
    with tempfile.TemporaryDirectory(dir=d, prefix=".keygen-") as tmp:    # mode 0700
        tmp_public, tmp_secret = auth.create_certificates(tmp, name)
        os.chmod(tmp_secret, 0o600)
        os.chmod(tmp_public, 0o644)
        os.replace(tmp_secret, secret)
        os.replace(tmp_public, public)
    return public, secret


def _load_certificate(path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = _zmq_auth().load_certificate(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read it as a ZeroMQ certificate ({e}); "
                         "'specstream keygen' writes them") from None
    for key in (public, secret):
        if key is not None and len(key) != _Z85_KEY_LENGTH:
            raise InputError(f"{path}: a key is {len(key)} characters, not {_Z85_KEY_LENGTH} "
                             "(z85 of 32 bytes)")
    return public, secret


def load_key_pair(path) -> tuple[bytes, bytes]:
    """``(public, secret)`` z85 keys from a secret certificate (``NAME.key_secret``)."""
    public, secret = _load_certificate(path)
    if secret is None:
        raise InputError(f"{path} holds a public key only; curve_secret takes this side's "
                         "secret certificate (NAME.key_secret)")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users: chmod 600 it", path)
    return public, secret


def load_public_key(key) -> bytes:
    """A z85 public key from a certificate file (public or secret) or the key itself."""
    if isinstance(key, (str, os.PathLike)) and os.path.exists(key):
        return _load_certificate(key)[0]
    raw = key.encode() if isinstance(key, str) else key
    if isinstance(raw, bytes) and len(raw) == _Z85_KEY_LENGTH:
        _zmq_auth()
        import zmq.utils.z85
        try:
            zmq.utils.z85.decode(raw)
        except (ValueError, KeyError, IndexError):
            raise InputError(f"{key!r} is not a z85 key") from None
        return raw
    raise InputError(f"{key}: no such certificate file (and not a {_Z85_KEY_LENGTH}-character "
                     "z85 public key)")


def load_allowed_keys(allow) -> frozenset:
    """The z85 public keys named by ``allow``: a directory (its ``*.key`` files),
    a certificate file or a z85 key, or a list of them.  An empty result is an error."""
    items = [allow] if isinstance(allow, (str, bytes, os.PathLike)) else list(allow)
    keys = set()
    for item in items:
        if isinstance(item, (str, os.PathLike)) and os.path.isdir(item):
            found = sorted(Path(item).glob("*.key"))
            keys.update(_load_certificate(f)[0] for f in found)
            if not found:
                raise InputError(f"{item}: no public keys (*.key files) in it")
        else:
            keys.add(load_public_key(item))
    if not keys:
        raise ParameterError("allow names no public key: nobody could connect")
    return frozenset(keys)


# ====================================================================== ZAP
class _ZapHandlers:
    """One ZAP handler per context (ZeroMQ admits one), one ZAP domain per
    server socket: each socket checks its peers against its own keys."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_context = {}      # id(context) -> [context, authenticator, set of domains]
        self._numbers = itertools.count(1)

    def add(self, context, provider) -> str:
        """Start checking the peers of a socket of ``context`` with
        ``provider.callback(domain, key)``; returns the socket's ZAP domain."""
        with self._lock:
            entry = self._by_context.get(id(context))
            if entry is None:
                from zmq.auth.thread import ThreadAuthenticator
                auth = ThreadAuthenticator(context)
                auth.start()
                entry = self._by_context[id(context)] = [context, auth, set()]
            domain = f"specstream-{next(self._numbers)}"
            entry[1].configure_curve_callback(domain, credentials_provider=provider)
            entry[2].add(domain)
            return domain

    def remove(self, context, domain: str):
        with self._lock:
            entry = self._by_context.get(id(context))
            if entry is None or domain not in entry[2]:
                return
            entry[2].discard(domain)
            entry[1].credentials_providers.pop(domain, None)
            if not entry[2]:
                del self._by_context[id(context)]
                entry[1].stop()


_ZAP = _ZapHandlers()


# ================================================================== sockets
class SocketSecurity:
    """The security of one socket: CURVE as a server or a client, or none.

    Parameters
    ----------
    curve_secret : str or Path, optional
        This side's key pair: a secret certificate (``NAME.key_secret``).
    curve_server : str, Path or bytes, optional
        Be a CURVE client of the server with this public key (its ``NAME.key``
        file, or the z85 key).
    allow : path, key or list of them, optional
        Be a CURVE server that admits these peers only: certificate files,
        directories of ``*.key`` files, z85 keys.
    insecure : bool
        Allow a plain socket that other machines can reach (see :func:`check_endpoint`).

    Keys are read at once (bad files fail here, not at the first peer).  A
    socket takes them with :meth:`apply` before it binds or connects, and
    :meth:`release` after it has closed.  :attr:`refused` counts the peers
    the ZAP check turned away (their frames never reach the socket).
    """

    def __init__(self, *, curve_secret=None, curve_server=None, allow=None,
                 insecure: bool = False):
        if curve_server is not None and allow is not None:
            raise ParameterError("give curve_server (this side is a CURVE client) or give "
                                 "allow (this side is the server, admitting those keys), "
                                 "not both")
        if curve_secret is None and (curve_server is not None or allow is not None):
            raise ParameterError("CURVE needs this side's key pair too: give curve_secret "
                                 "(a NAME.key_secret file; 'specstream keygen' makes one)")
        if curve_secret is not None and curve_server is None and allow is None:
            raise ParameterError("curve_secret alone does not say who the peer is: give allow "
                                 "(the public keys this side admits) or give curve_server (the "
                                 "public key of the server this side talks to)")
        self.insecure = bool(insecure)
        self.key_pair = None if curve_secret is None else load_key_pair(curve_secret)
        self.server_key = None if curve_server is None else load_public_key(curve_server)
        self.allowed = None if allow is None else load_allowed_keys(allow)
        self.refused = 0          # peers the ZAP check turned away
        self._zap = None          # (context, domain) while a server socket is checked
        self._said = -1.0         # when the last refusal was logged
        self._unsaid = 0

    @property
    def curve(self) -> bool:
        """The socket uses CURVE."""
        return self.key_pair is not None

    @property
    def role(self) -> str | None:
        """'server', 'client' or None (plain)."""
        if not self.curve:
            return None
        return "client" if self.server_key is not None else "server"

    def check(self, endpoint: str, bind: bool):
        """Refuse ``endpoint`` when it reaches other machines without CURVE."""
        check_endpoint(endpoint, bind=bind, curve=self.curve, insecure=self.insecure)

    def apply(self, sock):
        """Set ``sock`` (a ``zmq.Socket``) up for CURVE, before it binds or connects."""
        if not self.curve:
            return
        sock.curve_publickey, sock.curve_secretkey = self.key_pair
        if self.server_key is not None:
            sock.curve_serverkey = self.server_key
            return
        sock.curve_server = True
        domain = _ZAP.add(sock.context, self)
        self._zap = (sock.context, domain)
        sock.zap_domain = domain.encode()

    def release(self):
        """The socket has closed: stop checking its peers (and the ZAP handler
        of its context, when no other socket needs it)."""
        if self._zap is not None:
            _ZAP.remove(*self._zap)
            self._zap = None

    def callback(self, domain: str, key: bytes) -> bool:
        """The ZAP check of one peer (pyzmq calls it, in its authenticator thread)."""
        if key in self.allowed:
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._said < 1.0:           # one line a second, however many knock
            self._unsaid += 1
            return False
        more = f" (and {self._unsaid} more since)" if self._unsaid else ""
        self._said, self._unsaid = now, 0
        log.warning("refused a peer whose CURVE public key %s is not allowed%s; %d refused "
                    "so far", key.decode(errors="replace"), more, self.refused)
        return False


def open_socket(context, kind, endpoint: str, bind: bool, *, options=(),
                security: SocketSecurity | None = None, before=None):
    """A ZeroMQ socket of ``kind``, bound to or connected to ``endpoint``.

    ``options`` ((zmq option, value) pairs), then ``security`` (plain and
    loopback-only by default), then ``before(sock)`` (e.g. a socket monitor)
    are applied before it binds or connects, as ZeroMQ needs for MAXMSGSIZE,
    the HWMs and CURVE.  Raises :class:`~stream.errors.ParameterError` for an
    endpoint the loopback rule refuses or that cannot be bound or connected.
    The caller closes the socket, then calls ``security.release()``.
    """
    import zmq
    security = security or SocketSecurity()
    security.check(endpoint, bind)
    sock = context.socket(kind)
    try:
        for opt, value in options:
            sock.setsockopt(opt, value)
        security.apply(sock)
        if before is not None:
            before(sock)
        (sock.bind if bind else sock.connect)(endpoint)
    except BaseException as e:              # nothing half-made stays open
        sock.close(linger=0)
        security.release()
        if not isinstance(e, zmq.ZMQError):
            raise
        hint = " (is another program bound there? use another port)" \
            if e.errno == zmq.EADDRINUSE else ""
        raise ParameterError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {e}{hint}") \
            from None
    return sock
