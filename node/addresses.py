"""Instance and node addresses: what a valid ``host:port`` is, and its one canonical spelling.

An address is the key of an entry, so two spellings of one address would be two
instances. ``canonical`` is the single rule: a client's address is stored in its
canonical spelling (``registry``), and a peer's messages must already use it (``wire``
through ``is_hostport``; an honest node never sends anything else).

* port: ASCII digits only, 1..65535, at most 5 digits; leading zeros are dropped
  (``h:00080`` is ``h:80``).
* ``[...]``: an IPv6 literal (``ipaddress``), written in its compressed lower-case form
  (``[0:0::1]`` is ``[::1]``); an empty or invalid one is refused.
* a host of digits and dots with a dot in it looks like IPv4 and must be one
  (``ipaddress``: four octets of 0..255 without leading zeros).
* any other host is a name: ASCII letters, digits, ``.``, ``-``, ``_``, starting with a
  letter or digit, at most 253 characters, kept as written.
"""

from __future__ import annotations

import ipaddress
import re

_SHAPE = re.compile(r"(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9][A-Za-z0-9.\-_]{0,252}):([0-9]{1,5})", re.ASCII)
_IPV4_LOOKING = re.compile(r"[0-9.]*\.[0-9.]*", re.ASCII)

_MEMO_LIMIT = 1 << 16
"""Size at which the memo below is emptied (bounds its memory)."""

_memo: dict[str, str | None] = {}
"""value -> its canonical spelling, or None when it is not an address."""


class AddressError(ValueError):
    """A value is not a ``host:port`` address; the message says why, in one line."""


def canonical(value: object) -> str:
    """Return the canonical spelling of the address ``value``; raise AddressError when it is not one."""
    if not isinstance(value, str):
        raise AddressError("address must be a string")
    m = _SHAPE.fullmatch(value)
    if m is None:
        raise AddressError(f"address must be host:port with an ASCII port in 1..65535, got {value!r}")
    host, port = m.group(1), int(m.group(2))
    if not 0 < port < 65536:
        raise AddressError(f"address port must be in 1..65535, got {value!r}")
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            raise AddressError(f"{host} is not an IPv6 address, in {value!r}") from None
    elif _IPV4_LOOKING.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise AddressError(f"{host} is not an IPv4 address (four octets 0..255), in {value!r}") from None
    return f"{host}:{port}"


def is_hostport(value: object) -> bool:
    """Tell whether ``value`` is an address in its canonical spelling (memoized: gossip checks every entry)."""
    if not isinstance(value, str):
        return False
    spelled = _memo.get(value, False)
    if spelled is False:
        try:
            spelled = canonical(value)
        except AddressError:
            spelled = None
        if len(_memo) >= _MEMO_LIMIT:
            _memo.clear()
        _memo[value] = spelled
    return spelled == value
