"""Free-port probing."""

from __future__ import annotations

import socket

from memsaga.devstack.ports import free_port, free_ports, port_is_free


def test_a_listening_port_is_not_free_and_is_skipped() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not port_is_free(taken)
        assert free_port(preferred=taken) != taken


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4
    assert all(port_is_free(port) for port in ports)
