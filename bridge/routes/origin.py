"""Host and Origin checks on every request, with or without a password.

Two browser attacks work on a bridge that trusts the network (no password) or that the
browser holds credentials for:

- **Cross-site writes.** Any page may POST to the bridge: a ``text/plain`` body needs no CORS
  preflight, so ``POST /api/streams/warm`` from an ad would drain the doorbell's battery. The
  browser cannot read the answer, but the change is done. So a request that changes anything
  (every method but GET, HEAD and OPTIONS) must carry no ``Origin`` (curl, ffmpeg, Home
  Assistant send none) or the bridge's own origin; anything else is a 403.
- **DNS rebinding.** A page at ``evil.example`` re-points its name to 127.0.0.1 (or the
  bridge's LAN address) and then *reads* snapshots and clips as same-origin. The browser still
  sends ``Host: evil.example``, so the Host must be a name this bridge answers to: loopback
  names, the host it is bound to, this machine's own host name, and ``server.allowed_hosts``
  (``*`` there turns the check off). Any IP literal is accepted too: rebinding needs a name
  the attacker controls, and a literal is no such name. That is also what keeps a bridge
  bound to 0.0.0.0 reachable at each of the machine's addresses, and at the host's address
  when Docker forwards the port (the container never sees that address on an interface), with
  no list of interfaces to go stale. A refused Host gets 421 with the key to set.

Paths in ``exempt`` skip both checks. The SkyBell webhook is one: the cloud posts to whatever
URL the user registered, so its Host is the user's public name, and it is authenticated by its
own shared secret, which a page of another origin cannot know. ``/api/health`` is another: it
tells nothing and changes nothing, and probes call it by whatever name a container has.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["HostPolicy", "guard_middleware", "host_name", "same_origin"]

_LOGGER = logging.getLogger(__name__)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def host_name(value: str) -> str | None:
    """The name or address in a ``Host`` value (no port, lower case), or None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        inside, sep, rest = value[1:].partition("]")
        if not sep or (
            rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit())
        ):
            return None
        return inside or None
    if value.count(":") > 1:  # an unbracketed IPv6 literal (not valid HTTP, but unambiguous)
        return value if _is_ip(value) else None
    name, sep, port = value.rpartition(":")
    if sep and not (port.isascii() and port.isdigit()):
        return None
    name = (name if sep else value).rstrip(".")
    if not name or not name.isascii() or any(c in name for c in "/\\@ \t"):
        return None
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return False
    return True


class HostPolicy:
    """The names a ``Host`` header may carry for this bridge."""

    def __init__(self, bound: Iterable[str] = (), allowed: str = "") -> None:
        names = {"localhost"}
        for host in bound:
            if host not in _WILDCARDS:
                names.add(host.lower().strip("[]"))
        # The machine's own name (and its mDNS form): a rebinding page cannot make the browser
        # send it, and it is what a user types after seeing it in the router's list.
        own = socket.gethostname().lower().rstrip(".")
        if own:
            names.update({own, own.split(".")[0] + ".local"})
        self.any = False
        for item in (part.strip() for part in allowed.split(",")):
            if item == "*":
                self.any = True
            elif item and (name := host_name(item)) is not None:
                names.add(name)
        self.names = frozenset(names)

    def allows(self, host: str | None) -> bool:
        """Whether a request with this ``Host`` value (None: no header) is for this bridge."""
        if host is None or self.any:
            return True  # no Host at all is no browser (they always send one)
        name = host_name(host)
        if name is None:
            return False
        return name in self.names or name.endswith(".localhost") or _is_ip(name)


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` value names the scheme-less ``host`` (Host header)."""
    try:
        parts = urlsplit(origin.strip())
        netloc = parts.netloc.lower()
    except ValueError:
        return False
    if not netloc or parts.scheme not in _DEFAULT_PORTS:
        return False  # "null" (sandboxed frames, file:), or another scheme
    host = host.strip().lower()
    default = ":" + _DEFAULT_PORTS[parts.scheme]
    return netloc.removesuffix(default) == host.removesuffix(default)


def _refuse(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


def guard_middleware(policy: HostPolicy, *, exempt: Iterable[str] = ()) -> Middleware:
    """A middleware refusing foreign ``Host`` names (421) and cross-origin writes (403)."""
    open_paths = frozenset(exempt)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        host = request.headers.get("Host")
        if not policy.allows(host):
            shown = (host or "")[:80]
            _LOGGER.info("refused %s %s: Host %r", request.method, request.path, shown)
            raise _refuse(
                web.HTTPMisdirectedRequest,
                f"Host {shown!r} is not a name of this bridge; add it to server.allowed_hosts",
            )
        origin = request.headers.get("Origin")
        cross = origin is not None and (host is None or not same_origin(origin, host))
        if request.method not in _SAFE_METHODS and origin is not None and cross:
            shown = origin[:80]
            _LOGGER.info("refused %s %s: Origin %r", request.method, request.path, shown)
            raise _refuse(
                web.HTTPForbidden,
                f"cross-origin request refused: {shown!r} is not this bridge's page",
            )
        return await handler(request)

    return middleware
