"""``python -m orchestrator.driver.netaddr HOST:PORT``: the local address through which this machine
reaches HOST (the source address of its route there; nothing is sent), or 127.0.0.1 when HOST is
a loopback address. ``scripts/cluster_worker.sh`` advertises it as the worker's node address."""
from __future__ import annotations

import ipaddress
import socket
import sys


def reaching_address(host: str, port: int = 6379) -> str:
    """Local IP address used to reach ``host`` (``127.0.0.1`` for a loopback host)."""
    ip = socket.gethostbyname(host)
    if ipaddress.ip_address(ip).is_loopback:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((ip, port))  # UDP connect: picks the route, sends no packet
        return s.getsockname()[0]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m orchestrator.driver.netaddr HOST[:PORT]", file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":") if ":" in argv[0] else (argv[0], "", "6379")
    print(reaching_address(host, int(port or 6379)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
