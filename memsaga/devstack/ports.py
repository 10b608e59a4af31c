"""Free TCP ports, found by binding: never assume a port is free."""

from __future__ import annotations

import socket
from collections.abc import Collection

LOCALHOST = "127.0.0.1"


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option servers use, so a port in TIME_WAIT counts as free (it is, for them).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOCALHOST, *, preferred: int | None = None, exclude: Collection[int] = ()) -> int:
    """``preferred`` when it is free, else a port the kernel hands out (never one in ``exclude``)."""
    if preferred is not None and preferred not in exclude and port_is_free(preferred, host):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in exclude:
            return port


def free_ports(count: int, host: str = LOCALHOST, *, preferred: Collection[int | None] = ()) -> list[int]:
    """``count`` distinct free ports, the i-th being ``preferred[i]`` when that one is free."""
    wanted = list(preferred) + [None] * (count - len(preferred))
    chosen: list[int] = []
    for choice in wanted[:count]:
        chosen.append(free_port(host, preferred=choice, exclude=chosen))
    return chosen


def tcp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
