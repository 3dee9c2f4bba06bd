"""The http-client under supervisord, as `porch up` runs it: kill -9 it with a request in
flight, the caller gets Offline at once, supervisord restarts it, and the same caller's
next requests succeed without it doing anything."""

from __future__ import annotations

import os
import signal
import time

import pytest

import porch
from porch.http.client import HttpClientError, send_request, send_request_await_response
from support.http_test_server import TestServer
from support.node import SupervisedNode, wait_for


def answers(proc: porch.Process, url: str) -> bool:
    try:
        return send_request_await_response(proc, "GET", url, timeout=2).body == b"hello"
    except HttpClientError:
        return False


def test_supervisord_restarts_a_killed_http_client_and_callers_carry_on() -> None:
    server = TestServer().start()
    node = SupervisedNode('node = "sup.os"\n[[process]]\nid = "caller:demo:sys"\n'
                          'capabilities = ["http-client:distro:sys"]\n')
    try:
        assert node.up.returncode == 0, node.up.stdout + node.up.stderr
        proc = node.process("caller:demo:sys")
        wait_for(lambda: answers(proc, server.url("/hello")), 20, 0.2, "the http-client to answer")
        pid = node.pid_of("http-client")
        pending = send_request(proc, "GET", server.url("/delay/10"), timeout=30)
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(porch.Offline) as err:
            proc.await_message(timeout=5)
        assert err.value.id == pending
        assert time.monotonic() - killed < 2.0
        wait_for(lambda: answers(proc, server.url("/hello")), 20, 0.2, "supervisord to restart it")
        assert node.pid_of("http-client") != pid
        status = node.cli("status")
        assert "http-client" in status.stdout and "RUNNING" in status.stdout
    finally:
        node.close()
        server.stop()
