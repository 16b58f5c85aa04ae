#!/usr/bin/env python3
"""sd-probe: network and process checks the harness runs inside a node's container.

Installed in the image as /usr/local/bin/sd-probe; standard library only. Every
command prints one JSON object on stdout and exits 0 when it could measure (a cut
link is a measurement, not an error); bad arguments exit 2.

    sd-probe connect [--port P] [--timeout S] IP...     {"<ip>": true|false, ...}
    sd-probe loss --attempts N [--port P] [--timeout S] IP
                                                         {"attempts": k, "failures": 0|1}
    sd-probe connect-time [--port P] [--timeout S] IP   {"seconds": 0.05} or {"seconds": null}
    sd-probe stopped [PID]                               {"pid": 1, "state": "T (stopped)", "stopped": true}

``connect`` tries every target at once: true means a TCP connect succeeded within
the timeout. ``loss`` connects up to N times and stops at the first failure (with a
timeout below the SYN retransmission time a connect fails exactly when its SYN is
dropped). ``connect-time`` measures one connect. ``stopped`` reads /proc/PID/status.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

PORT = 5000


def connects(ip: str, port: int, timeout: float) -> bool:
    """Return whether a TCP connect to ip:port succeeds within ``timeout`` seconds."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        return s.connect_ex((ip, port)) == 0
    except OSError:
        return False
    finally:
        s.close()


def connect(targets: list[str], port: int, timeout: float) -> dict[str, bool]:
    """Connect to every target in parallel; ip -> connected."""
    result: dict[str, bool] = {}

    def one(ip: str) -> None:
        result[ip] = connects(ip, port, timeout)

    threads = [threading.Thread(target=one, args=(ip,)) for ip in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def loss(target: str, attempts: int, port: int, timeout: float) -> dict[str, int]:
    """Connect up to ``attempts`` times, stopping at the first failure."""
    done = failures = 0
    for _ in range(attempts):
        done += 1
        if not connects(target, port, timeout):
            failures = 1
            break
    return {"attempts": done, "failures": failures}


def connect_time(target: str, port: int, timeout: float) -> dict[str, float | None]:
    """Seconds one connect took; None when it failed."""
    start = time.monotonic()
    ok = connects(target, port, timeout)
    return {"seconds": time.monotonic() - start if ok else None}


def stopped(pid: int) -> dict[str, object]:
    """The process state of ``pid`` from /proc and whether a signal stopped it."""
    state = ""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("State:"):
                    state = line.split(":", 1)[1].strip()
    except OSError as exc:
        state = f"unreadable: {exc.strerror}"
    return {"pid": pid, "state": state, "stopped": "(stopped)" in state}


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per probe."""
    p = argparse.ArgumentParser(prog="sd-probe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, timeout in (("connect", 1.0), ("loss", 0.4), ("connect-time", 10.0)):
        cmd = sub.add_parser(name)
        cmd.add_argument("--port", type=int, default=PORT)
        cmd.add_argument("--timeout", type=float, default=timeout)
        cmd.add_argument("targets" if name == "connect" else "target", nargs="+" if name == "connect" else None)
        if name == "loss":
            cmd.add_argument("--attempts", type=int, required=True)
    sub.add_parser("stopped").add_argument("pid", type=int, nargs="?", default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one probe and print its JSON result."""
    args = parser().parse_args(argv)
    if args.command == "connect":
        result: object = connect(args.targets, args.port, args.timeout)
    elif args.command == "loss":
        result = loss(args.target, args.attempts, args.port, args.timeout)
    elif args.command == "connect-time":
        result = connect_time(args.target, args.port, args.timeout)
    else:
        result = stopped(args.pid)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
