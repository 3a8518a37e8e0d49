"""`serve`'s choices before it starts anything: demo ports, the first-run message."""

from __future__ import annotations

import json
import socket

import pytest
from django.core.management.base import CommandError

from comfyweb.first_run import credentials_box
from comfyweb.management.commands.serve import DEMO_BASE_PORT, demo_ports
from tests.serve_process import free_port


def test_demo_servers_default_to_ports_far_from_comfyuis_own_8188():
    port = demo_ports(None, 3)
    assert DEMO_BASE_PORT <= port < DEMO_BASE_PORT + 200
    assert not port <= 8188 < port + 3


def test_a_chosen_demo_port_is_used_as_given():
    port = free_port()
    assert demo_ports(port, 1) == port


def test_a_busy_chosen_demo_port_stops_serve_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"port {port} is in use"):
            demo_ports(port - 1, 2)


def test_demo_ports_past_the_last_tcp_port_are_refused():
    with pytest.raises(CommandError, match="not TCP ports"):
        demo_ports(65535, 2)


def test_the_credentials_box_is_a_plain_frame_around_user_password_and_url():
    box = credentials_box("admin", "s3cret-pw", "http://127.0.0.1:8000/").splitlines()
    assert box[0] == box[-1] == "+" + "-" * (len(box[0]) - 2) + "+"
    assert all(line.startswith("| ") and line.endswith(" |") for line in box[1:-1])
    assert {len(line) for line in box} == {len(box[0])}
    text = "\n".join(box)
    assert "username: admin" in text
    assert "password: s3cret-pw" in text
    assert "Log in at http://127.0.0.1:8000/" in text
    for line in box:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
