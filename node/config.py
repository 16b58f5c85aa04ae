"""Node configuration: one dataclass, presets built from it, one reader of flags and env."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .addresses import AddressError, canonical, is_hostport
from .keyring import DEFAULT_CLUSTER, check_cluster, parse_keys

ENV_PREFIX = "SD_"

MAX_CLOCK_OFFSET = 10 * 365 * 86400.0
"""Largest |clock offset| a node accepts, in seconds (ten years)."""


TRANSPORTS = ("udp", "http")
"""Values of ``transport``: how a node sends its gossip."""
MIN_DATAGRAM, MAX_DATAGRAM = 512, 65507
"""Bounds of ``max_datagram``: room for a summary; the largest IPv4 UDP payload."""


class ConfigError(ValueError):
    """Raised when configuration is invalid; the message is one line meant for a human."""


@dataclass(frozen=True)
class Config:
    """Everything a node needs to run; every field has a default except ``port``."""

    # Interface the HTTP server binds to (the image sets 0.0.0.0 inside its container).
    host: str = "127.0.0.1"
    # TCP port of the HTTP server; required (there is no sensible default to share).
    port: int | None = None
    # host:port that peers and clients use to reach this node; derived from the
    # hostname (or ``host`` when it is not a wildcard) and ``port`` when empty.
    advertise: str | None = None
    # host:port of seed nodes, contacted at start and retried while unreachable.
    seeds: tuple[str, ...] = ()
    # SQLite file holding every entry; created with its schema when missing.
    db: str = "registry.db"
    # Seconds between gossip rounds (memberlist LAN: 0.2 s; Cassandra: 1 s).
    interval: float = 1.0
    # Peers contacted per round (memberlist and chitchat use 3).
    fanout: int = 3
    # Seconds a registration stays healthy after its last renewal.
    ttl: float = 30.0
    # Seconds an expired registration is still listed (status "expired") before removal.
    expire_grace: float = 30.0
    # Seconds a deregistration tombstone is kept before garbage collection; must
    # exceed ttl + expire_grace so no unrenewed copy can outlive it anywhere.
    tombstone_ttl: float = 120.0
    # Seconds added to this node's wall clock (testing aid for clock skew).
    clock_offset: float = 0.0
    # Seconds one gossip exchange may take before the peer counts as failed.
    timeout: float = 1.0
    # Seconds a client-supplied last_update may lie ahead of this node's clock.
    max_future: float = 60.0
    # Largest accepted body of a client request, in bytes.
    max_body: int = 16 * 1024
    # Largest accepted body of a gossip message, in bytes.
    max_gossip_body: int = 16 * 1024 * 1024
    # Worker threads of the WSGI server.
    threads: int = 8
    # Client connections the server holds open at once (idle, mid-request or active);
    # further ones wait in the listen backlog. Lowered to fit the open-files limit.
    max_connections: int = 4096
    # Python logging level name.
    log_level: str = "INFO"
    # Extra per-run label shown in logs (harness sets it to the node name).
    name: str = ""
    # Base64 32-byte gossip keys; the first signs, all verify (rotation). Empty: gossip
    # is open (unsigned, accepted unsigned). Never shown in the repr.
    gossip_keys: tuple[str, ...] = field(default=(), repr=False)
    # Cluster id carried and signed in every gossip message; other clusters' are refused.
    cluster: str = DEFAULT_CLUSTER
    # How this node sends gossip: "udp" (one datagram per message, over HTTP when one
    # datagram cannot carry it) or "http". Either way it answers both on its port.
    transport: str = "udp"
    # Largest gossip datagram sent, in bytes (1200: fits any path MTU, IPv6's 1280 included).
    max_datagram: int = 1200
    # Push what changes the store at once to ``fanout`` members, besides the rounds
    # (node/rumor.py); off, news travels with the rounds' exchanges only.
    eager_push: bool = True
    # Peers per round once this node's store has not changed for SETTLE_ROUNDS rounds
    # (membership.Pace), with eager push on: anti-entropy at rest, while pushes carry news.
    # 0: always ``fanout``.
    rest_fanout: int = 1
    # Serve /admin/* (the clock offset); off, they answer 403.
    enable_admin: bool = False
    # -- failure detection (node/liveness.py); node entries are not leased --
    # Other peers asked to reach a suspect (SWIM's indirect probes, k; memberlist: 3).
    probe_fanout: int = 3
    # Probe waves, one gossip round apart, that must all fail before a suspect is
    # marked down (1 + retries: a second wave rides out lost packets).
    probe_waves: int = 2
    # Suspects probed at once; a failed exchange with a further peer is not followed
    # up until one of them is settled (bounds the probes after a partition).
    max_suspects: int = 4
    # Highest local health score (node/awareness.py; Lifeguard, memberlist: 8). A node that
    # finds itself slow scales its probe timeouts by score + 1 and marks no one down until
    # its score is back to 0; 0 turns the score off.
    health_max: int = 8
    # Node entries for addresses not yet held that one gossip message may add; the rest
    # are refused and come again in later exchanges (node/membership.py).
    max_new_peers: int = 128

    def advertised(self) -> str:
        """Return the host:port peers use for this node."""
        if self.advertise:
            return self.advertise
        host = self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        return f"{host}:{self.port}"

    def validate(self) -> Config:
        """Check every field and return self; raise ConfigError naming the first bad one."""
        self._check_addresses()
        self._check_amounts()
        self._check_gossip_auth()
        self._check_transport()
        if self.tombstone_ttl <= self.ttl + self.expire_grace:
            raise ConfigError(
                f"tombstone_ttl ({self.tombstone_ttl}) must exceed ttl + expire_grace "
                f"({self.ttl + self.expire_grace}) or deleted entries could come back"
            )
        return self

    def _check_addresses(self) -> None:
        if self.port is None:
            raise ConfigError("port is required (--port or SD_PORT)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1..65535, got {self.port}")
        if self.advertise is not None:
            _check_address("advertise", self.advertise)
        for seed in self.seeds:
            _check_address("seed", seed)

    def _check_amounts(self) -> None:
        for name in ("interval", "ttl", "timeout"):
            if not getattr(self, name) > 0:  # NaN fails too
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("expire_grace", "max_future"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("fanout", "threads", "max_connections", "probe_waves", "max_suspects", "max_new_peers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.clock_offset) and abs(self.clock_offset) <= MAX_CLOCK_OFFSET):
            raise ConfigError(f"clock_offset must be a finite number of seconds within 10 years, "
                              f"got {self.clock_offset}")

    def _check_gossip_auth(self) -> None:
        try:
            parse_keys(self.gossip_keys)  # the message names a key by position, never by value
            check_cluster(self.cluster)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for name in ("probe_fanout", "health_max", "rest_fanout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def _check_transport(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")
        if not MIN_DATAGRAM <= self.max_datagram <= MAX_DATAGRAM:
            raise ConfigError(f"max_datagram must be {MIN_DATAGRAM}..{MAX_DATAGRAM} bytes, got {self.max_datagram}")


def _check_address(what: str, value: str) -> None:
    """Accept an address in its canonical spelling (``addresses``), the only one peers accept."""
    if is_hostport(value):
        return
    try:
        spelled = canonical(value)
    except AddressError:
        raise ConfigError(f"{what} must be HOST:PORT, got {value!r}") from None
    raise ConfigError(f"{what} must be written {spelled!r}, got {value!r}")


DEFAULT = Config()
"""LAN defaults: 1 s rounds to 3 peers, 30 s leases (Cassandra-like pace)."""

LOCAL = dataclasses.replace(DEFAULT, interval=0.2, ttl=6.0, expire_grace=6.0, tombstone_ttl=60.0, timeout=0.5)
"""One machine or one Docker bridge: memberlist's 200 ms rounds, 6 s leases."""

TEST = dataclasses.replace(LOCAL, interval=0.05, timeout=0.2, log_level="WARNING")
"""In-process tests: fast rounds, quiet logs."""

PRESETS = {"default": DEFAULT, "local": LOCAL, "test": TEST}

# flag name -> (converter, help); the env var is SD_<FLAG upper, dashes as underscores>.
_FIELDS: dict[str, tuple[type, str]] = {
    "preset": (str, "base preset: default, local or test"),
    "host": (str, "interface to bind"),
    "port": (int, "HTTP port (required)"),
    "advertise": (str, "HOST:PORT peers and clients use to reach this node"),
    "seeds": (str, "comma-separated HOST:PORT of seed nodes"),
    "db": (str, "SQLite file"),
    "interval": (float, "seconds between gossip rounds"),
    "fanout": (int, "peers contacted per round"),
    "ttl": (float, "lease of a registration, seconds"),
    "expire-grace": (float, "seconds an expired entry is listed before removal"),
    "tombstone-ttl": (float, "seconds a deregistration is remembered"),
    "clock-offset": (float, "seconds added to this node's wall clock (testing aid)"),
    "timeout": (float, "seconds one gossip exchange may take"),
    "max-future": (float, "seconds a client last_update may lie in the future"),
    "threads": (int, "WSGI worker threads"),
    "max-connections": (int, "client connections held open at once"),
    "log-level": (str, "DEBUG, INFO, WARNING or ERROR"),
    "name": (str, "label shown in log lines"),
    "gossip-keys": (str, "comma-separated base64 32-byte keys; the first signs, all verify (none: open gossip)"),
    "cluster": (str, "cluster id signed into every gossip message"),
    "transport": (str, "how gossip is sent: udp (datagrams, HTTP for big ones) or http"),
    "max-datagram": (int, "largest gossip datagram in bytes; bigger messages go over HTTP"),
    "eager-push": (bool, "push news to fanout peers as soon as it changes the store (--no-eager-push: rounds only)"),
    "rest-fanout": (int, "peers per round once the store has been still for 10 rounds, with eager push (0: fanout)"),
    "enable-admin": (bool, "serve /admin/* (clock offset); off by default"),
    # failure detection
    "probe-fanout": (int, "peers asked to probe a suspect indirectly"),
    "probe-waves": (int, "probe waves that must all fail before a suspect is marked down"),
    "max-suspects": (int, "suspects probed at once"),
    "health-max": (int, "highest local health score (0: off); a node above 0 marks no one down"),
    "max-new-peers": (int, "new peers one gossip message may add"),
}

_NEGATABLE = frozenset({"eager-push"})
"""Boolean flags that are on by default, so they also take ``--no-<flag>``."""

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_name(flag: str) -> str:
    """Return the environment variable that stands for ``--flag``."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    """Return the parser of every ``_FIELDS`` flag (values as strings; on/off flags as "1", or bools)."""
    parser = argparse.ArgumentParser(
        prog="python -m node",
        description="Gossip service-discovery registry node. Every flag has an SD_* env equivalent.",
        epilog="`python -m node keygen` prints a fresh key for --gossip-keys.",
    )
    for flag, (conv, help_) in _FIELDS.items():
        more: dict[str, Any] = {"action": "store_const", "const": "1"} if conv is bool else {}
        if flag in _NEGATABLE:  # --flag / --no-flag
            more = {"action": argparse.BooleanOptionalAction}
        parser.add_argument(f"--{flag}", help=f"{help_} [env {env_name(flag)}]", **more)
    return parser


def from_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build a validated Config from a preset, then env vars, then flags (flags win)."""
    environ = os.environ if environ is None else environ
    args = vars(_parser().parse_args(argv))

    raw: dict[str, str] = {}
    for flag in _FIELDS:
        key = flag.replace("-", "_")
        value = args.get(key)
        if isinstance(value, bool):  # from --flag / --no-flag
            value = "1" if value else "0"
        if value is None:
            value = environ.get(env_name(flag))
        if value is not None and value != "":
            raw[key] = value

    preset_name = raw.pop("preset", "default")
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        conv = _FIELDS[key.replace("_", "-")][0]
        if key in ("seeds", "gossip_keys"):
            values[key] = tuple(s.strip() for s in value.split(",") if s.strip())
            continue
        try:
            values[key] = _boolean(value) if conv is bool else conv(value)
        except ValueError:
            kind = {int: "an integer", float: "a number", bool: "1 or 0"}.get(conv, conv.__name__)
            raise ConfigError(f"{key.replace('_', '-')} must be {kind}, got {value!r}") from None
    try:
        return dataclasses.replace(PRESETS[preset_name], **values).validate()
    except TypeError as exc:  # pragma: no cover - guarded by _FIELDS
        raise ConfigError(str(exc)) from None


def _boolean(value: str) -> bool:
    """Read an on/off setting: 1, true, yes, on or 0, false, no, off (any case)."""
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ValueError(value)
