"""What stops a web page from driving the server: Host and Origin checks, the pickle rule.

riverbed's default is a loopback server with auth off. Any web page the user opens can send
requests to it: a cross-origin ``fetch`` with a ``text/plain`` body, a form or a WebSocket
needs no preflight, so the browser sends it and only hides the answer. With DNS rebinding
(a name the page's site controls re-pointed at 127.0.0.1) the page can even read the
answers. The checks here, made by every route's :class:`~riverbed.server.auth.Gate` before
anything else (the ASGI routes, the fast path and the server's direct protocol alike):

1. **Host.** A request whose ``Host`` is not a loopback name (``localhost``, 127.0.0.0/8,
   ``[::1]``), the address the server is bound to, the local address the connection arrived
   on or a name in ``allowed_hosts`` is refused with 400 ``host_not_allowed``: a rebound
   name is not any of these.
2. **Origin.** A state-changing request (any method but GET and HEAD, a WebSocket
   handshake, and a route whose scope is ``predict``, ``learn`` or ``admin`` whatever its
   method) that carries an ``Origin`` other than the server's own (the ``Host`` it was sent
   to) and not in ``cors_origins``, or no Origin but ``Sec-Fetch-Site: cross-site`` or
   ``same-site``, is refused with 403 ``cross_origin_refused``. Requests without those
   headers (curl, the Python clients, the older systems' clients) are not browsers' and
   pass; the dashboard's requests carry its own origin and pass.
3. **Pickles** (:meth:`WebGuard.pickle_refusal`, called by each route that takes a pickled
   upload, before it reads or stores anything). With auth off, unpickling an upload runs the
   uploader's code as the local operator, so it takes more than an allowed origin: a request
   is a browser's if it carries an ``Origin`` or a ``Sec-Fetch-Site`` header (every current
   browser sends one or both on a ``fetch``, a form post and a WebSocket; a page cannot
   remove them), and a browser's pickled upload is refused with 403
   ``browser_pickle_refused`` unless its ``Origin`` is in ``pickle_origins`` -- even from the
   server's own origin or one in ``cors_origins``. curl, the Python clients and the older
   systems' clients send neither header and upload as before. With auth on, only an admin
   token uploads pickles, browser or not.

And who the client is (:class:`ProxyRule`): the connection's address, unless it is one of
``forwarded_allow_ips`` -- a proxy the operator named -- whose ``X-Forwarded-For`` (or,
without one, ``Forwarded``) then names it. Walking that list from the right, past every hop
that is itself trusted, the first other address is the client: what a client wrote in the
header before the proxy appended its address is never believed. The rate limiter's key and
the audit log's ``client`` are this address. The default trusts nobody, so no local
process can pick its own rate-limit key; ``riverbed serve`` turns uvicorn's own handling of
these headers off (it trusts 127.0.0.1 by default) so that this rule is the only one.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import MutableMapping
from typing import Any

from riverbed.config import Settings
from riverbed.exceptions import BrowserPickleRefused, CrossOriginRefused, HostNotAllowed

__all__ = ["ProxyRule", "WebGuard", "is_loopback", "split_host"]

Scope = MutableMapping[str, Any]

_BROWSER_SITES = frozenset({b"cross-site", b"same-site"})
_MEMO_SIZE = 1024


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost).

    >>> is_loopback("127.0.0.1"), is_loopback("::ffff:127.0.0.2"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    host = host.strip().strip("[]").lower()
    if host in ("localhost", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _items(raw: str) -> list[str]:
    return [item.strip().lower() for item in raw.split(",") if item.strip()]


def split_host(value: str) -> str:
    """The host of a ``Host`` header (or an origin's netloc), without its port or brackets.

    >>> split_host("[::1]:8000"), split_host("Example.com:80"), split_host("10.0.0.2")
    ('::1', 'example.com', '10.0.0.2')
    """
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _netloc(value: str) -> str:
    """A Host value or an origin's netloc, lowercased, with a default port dropped."""
    value = value.strip().lower()
    for default in (":80", ":443"):
        if value.endswith(default):
            return value[: -len(default)]
    return value


class WebGuard:
    """The Host and Origin rules of one app (the module docstring), from its settings."""

    def __init__(self, settings: Settings) -> None:
        hosts = _items(settings.allowed_hosts)
        self.any_host = "*" in hosts
        self.hosts = frozenset(split_host(h) for h in hosts if not h.startswith("."))
        self.suffixes = tuple(h for h in hosts if h.startswith(".") and len(h) > 1)
        bound = split_host(settings.host)
        self.bound = "" if bound in ("0.0.0.0", "::", "") else bound
        self.origins = _origin_set(settings.cors_origins)
        self.pickle_origins = _origin_set(settings.pickle_origins)
        self._hosts_seen: dict[bytes, bool] = {}

    def check(self, scope: Scope, changes_state: bool) -> None:
        """Refuse the request (:class:`HostNotAllowed`, :class:`CrossOriginRefused`) if a
        page on another site could be driving it; return quietly otherwise."""
        host = origin = site = None
        for name, value in scope["headers"]:  # the first of each, as Starlette reads them
            if name == b"host":
                host = value if host is None else host
            elif name == b"origin":
                origin = value if origin is None else origin
            elif name == b"sec-fetch-site":
                site = value if site is None else site
        if host is not None and not self.any_host and not self.host_allowed(host, scope):
            shown = host.decode("latin-1")
            raise HostNotAllowed(
                f"this server does not answer to the host {shown!r}; add it to the "
                "allowed_hosts setting (--allowed-hosts / RIVERBED_ALLOWED_HOSTS) if it is "
                "this server's name",
                detail={"host": shown, "setting": "allowed_hosts"},
            )
        if changes_state and (origin is not None or site is not None):
            reason = self.origin_refusal(host, origin, site)
            if reason is not None:
                raise CrossOriginRefused(
                    f"{reason}: a web page on another site may not change this server's "
                    "state; add its origin to the cors_origins setting (--cors-origins / "
                    "RIVERBED_CORS_ORIGINS) if it should",
                    detail={
                        "origin": None if origin is None else origin.decode("latin-1"),
                        "setting": "cors_origins",
                    },
                )

    def host_allowed(self, raw: bytes, scope: Scope) -> bool:
        known = self._hosts_seen.get(raw)
        if known is None:
            host = split_host(raw.decode("latin-1"))
            known = (
                is_loopback(host)
                or host == self.bound
                or host in self.hosts
                or any(host.endswith(s) or host == s[1:] for s in self.suffixes)
            )
            if len(self._hosts_seen) >= _MEMO_SIZE:
                self._hosts_seen.clear()
            self._hosts_seen[raw] = known
        if known:
            return True
        server = scope.get("server")  # bound to 0.0.0.0: the address this client reached
        if not server:
            return False
        return split_host(str(server[0])) == split_host(raw.decode("latin-1"))

    def origin_refusal(
        self, host: bytes | None, origin: bytes | None, site: bytes | None
    ) -> str | None:
        """Why a state-changing request with these headers is refused, or None."""
        if origin is None:
            if site is not None and site in _BROWSER_SITES:
                return f"Sec-Fetch-Site is {site.decode('latin-1')}"
            return None
        text = origin.decode("latin-1").strip().lower()
        scheme, sep, netloc = text.partition("://")
        if sep and scheme in ("http", "https") and netloc:
            netloc = _netloc(netloc)
            if host is not None and netloc == _netloc(host.decode("latin-1")):
                return None
        if _listed(text, self.origins):
            return None
        return f"the request comes from the origin {text!r}"

    def pickle_refusal(self, scope: Scope) -> BrowserPickleRefused | None:
        """The error for a pickled upload that a browser sends (rule 3 of the module
        docstring), or None for a request no browser sent or one from ``pickle_origins``.
        The caller applies it with auth off only (with auth on, the admin scope decides)."""
        origin = site = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value if origin is None else origin
            elif name == b"sec-fetch-site":
                site = value if site is None else site
        if origin is None and site is None:
            return None
        shown = None if origin is None else origin.decode("latin-1")
        if shown is not None and _listed(shown.strip().lower(), self.pickle_origins):
            return None
        sent = f"Origin {shown!r}" if shown is not None else "no Origin"
        if site is not None:
            sent += f" and Sec-Fetch-Site {site.decode('latin-1')!r}"
        return BrowserPickleRefused(
            f"a pickled upload runs its code on this machine, and this one comes from a web "
            f"browser ({sent}); with auth off riverbed takes pickles only from clients that "
            "are not browsers (curl, the Python clients). Add the page's origin to the "
            "pickle_origins setting (--pickle-origins / RIVERBED_PICKLE_ORIGINS) if it "
            "should upload pickles, or turn auth on and use an admin token",
            detail={"origin": shown, "setting": "pickle_origins"},
        )


def _origin_set(setting: str) -> frozenset[str]:
    """An origins setting (``cors_origins``, ``pickle_origins``) as lowercased origins,
    default ports dropped."""
    return frozenset(_netloc(o.rstrip("/")) for o in _items(setting))


def _listed(origin: str, origins: frozenset[str]) -> bool:
    """Whether a lowercased ``Origin`` value is one of ``origins`` (as :func:`_origin_set`
    makes them; an entry may also leave the scheme out)."""
    scheme, sep, netloc = origin.partition("://")
    if not (sep and scheme in ("http", "https") and netloc):
        return False
    netloc = _netloc(netloc)
    return netloc in origins or f"{scheme}://{netloc}" in origins


def _forwarded_for(values: list[bytes]) -> list[str]:
    """The ``for=`` hops of ``Forwarded`` header values (RFC 7239), in order; an obfuscated
    or unknown hop (``for=_hidden``, ``for=unknown``) is kept as written."""
    hops = []
    for element in b",".join(values).decode("latin-1").split(","):
        for pair in element.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip().lower() == "for":
                hops.append(_strip_port(value.strip().strip('"')))
    return hops


def _strip_port(hop: str) -> str:
    """``[2001:db8::1]:4711`` -> ``2001:db8::1``, ``192.0.2.1:80`` -> ``192.0.2.1``."""
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop[1:]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


class ProxyRule:
    """Who the client is when proxies forward: ``forwarded_allow_ips`` (the module
    docstring). ``enabled`` is False when no proxy is trusted, and :meth:`apply` then need
    not be called."""

    def __init__(self, setting: str) -> None:
        items = [item.strip() for item in setting.split(",") if item.strip()]
        self.any = "*" in items
        networks = []
        for item in items:
            if item == "*":
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {item!r} is not an IP address or network"
                ) from None
        self.networks = tuple(networks)
        self.enabled = self.any or bool(networks)
        self._trusted: dict[str, bool] = {}

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (an address) is a proxy whose headers are believed."""
        if self.any:
            return True
        known = self._trusted.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                known = False
            else:
                mapped = getattr(address, "ipv4_mapped", None)
                known = any(
                    address in net or (mapped is not None and mapped in net)
                    for net in self.networks
                )
            if len(self._trusted) >= _MEMO_SIZE:
                self._trusted.clear()
            self._trusted[host] = known
        return known

    def apply(self, scope: Scope) -> None:
        """Rewrite ``scope["client"]`` (and ``scheme``) from the proxy headers when the
        connection comes from a trusted proxy; leave it alone otherwise."""
        client = scope.get("client")
        if not client or not self.trusts(str(client[0])):
            return
        xff: list[bytes] = []
        forwarded: list[bytes] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-proto":
                proto = value if proto is None else proto
        if xff:
            hops = [_strip_port(h.strip()) for h in b",".join(xff).decode("latin-1").split(",")]
        elif forwarded:
            hops = _forwarded_for(forwarded)
            if proto is None:
                proto = _forwarded_proto(forwarded)
        else:
            hops = []
        hops = [hop for hop in hops if hop]
        if hops:
            chosen = hops[0]  # every hop trusted: the first one
            for hop in reversed(hops):
                if not self.trusts(hop):
                    chosen = hop
                    break
            scope["client"] = (chosen, 0)
        if proto is not None:
            text = proto.decode("latin-1").strip().lower()
            if text in ("http", "https"):
                scope["scheme"] = (
                    text.replace("http", "ws") if scope["type"] == "websocket" else text
                )


def _forwarded_proto(values: list[bytes]) -> bytes | None:
    """The ``proto=`` of the last ``Forwarded`` element that has one (the nearest hop)."""
    found = None
    for element in b",".join(values).decode("latin-1").split(","):
        for pair in element.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip().lower() == "proto":
                found = value.strip().strip('"').encode("latin-1")
    return found
