"""Issue 9, the kernel's side: a process without a capability cannot answer, redirect
or time out anyone else's request (item 2), cannot take a service's id (item 12), and
cannot register an id of any length (item 13). Each attack runs against a real kernel
with real processes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests
import zmq

import porch
from porch.process.message import Message
from porch.wire import PROTOCOL_VERSION, kernel_pb2
from support.node import Node, free_port, wait_for

APP_SOURCE = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()

# Answers every request after a pause, so that an attacker has time to act first.
SLOW = """
    import time, porch
    p = porch.Process()
    while True:
        m = p.await_message()
        time.sleep(1.0)
        p.respond(m, b"real:" + m.body)
"""


@pytest.fixture
def slow(node: Node) -> Node:
    node.spawn("slow:demo:sys", SLOW)
    node.wait_registered("slow:demo:sys")
    return node


def test_item2_an_rsvp_cannot_hijack_the_answer_to_someone_elses_request(slow: Node) -> None:
    """The forgery of the issue: the attacker asks itself, with rsvp = the victim and the
    victim's pending id, then answers: the kernel used to take that as the answer."""
    victim = slow.process("victim:demo:sys")
    attacker = slow.process("attacker:demo:sys")
    id_ = victim.send_request("slow:demo:sys", b"q", expects_response=10)
    attacker.send_request("attacker:demo:sys", b"forge", rsvp="victim:demo:sys", id=id_,
                          expects_response=10)
    with pytest.raises(porch.NoCapability, match="rsvp"):
        attacker.await_message(timeout=5)
    with pytest.raises(porch.Timeout):  # the forged request was never delivered
        attacker.await_message(timeout=0.3)
    reply = victim.await_message(timeout=10)
    assert (reply.source, reply.body, reply.id) == ("slow:demo:sys", b"real:q", id_)


def test_item2_an_rsvp_cannot_time_out_someone_elses_request(slow: Node) -> None:
    """An expired request naming the victim as rsvp used to send the victim a Timeout
    for its own pending id (a 504 forced on someone else's HTTP request)."""
    victim = slow.process("victim:demo:sys")
    attacker = slow.process("attacker:demo:sys")
    id_ = victim.send_request("slow:demo:sys", b"q", expects_response=10)
    attacker.send_request("slow:demo:sys", b"x", rsvp="victim:demo:sys", id=id_,
                          expects_response=0.0001)
    with pytest.raises(porch.NoCapability):
        attacker.await_message(timeout=5)
    reply = victim.await_message(timeout=10)
    assert (reply.source, reply.body) == ("slow:demo:sys", b"real:q")


def test_item2_a_response_from_anyone_but_the_addressee_is_dropped(slow: Node) -> None:
    victim = slow.process("victim:demo:sys")
    attacker = slow.process("attacker:demo:sys")
    id_ = victim.send_request("slow:demo:sys", b"q", expects_response=10)
    # A Response aimed straight at the victim's pending id, as if from the target.
    forged = Message(id=id_, source="victim:demo:sys", target="attacker:demo:sys",
                     is_request=True, body=b"")
    attacker._core.send_response(forged, b"forged")
    reply = victim.await_message(timeout=10)
    assert (reply.source, reply.body) == ("slow:demo:sys", b"real:q")


def test_item2_the_same_id_from_two_requesters_are_two_requests(slow: Node) -> None:
    a = slow.process("a:demo:sys")
    b = slow.process("b:demo:sys")
    id_ = a.send_request("slow:demo:sys", b"from-a", expects_response=10)
    b.send_request("slow:demo:sys", b"from-b", expects_response=10, id=id_)
    assert a.await_message(timeout=10).body == b"real:from-a"
    assert b.await_message(timeout=10).body == b"real:from-b"


def test_item2_a_pending_id_reused_by_its_requester_does_not_replace_the_first(slow: Node) -> None:
    """The kernel refuses the second request (the stub fails that id); it neither
    delivers it nor re-points the first one."""
    a = slow.process("a:demo:sys")
    id_ = a.send_request("slow:demo:sys", b"first", expects_response=10)
    a.send_request("a:demo:sys", b"second", expects_response=10, id=id_)
    with pytest.raises(porch.Offline, match="already pending"):
        a.await_message(timeout=5)
    with pytest.raises(porch.Timeout):  # "second" never arrives (the first's answer is
        a.await_message(timeout=0.5)   # dropped by the stub, which failed that id)
    assert "malformed message from a:demo:sys: request id" in slow.log("kernel")


def test_item2_forged_answers_never_reach_the_http_server() -> None:
    """Through the front door: an app answers slowly; an attacker without capabilities
    aims answers at the http-server with rsvp and every id around the live ones (it
    cannot know them): the client still gets the app's answer."""
    n = Node('node = "test.os"\n[[process]]\nid = "slow-app:demo:sys"\n'
             'capabilities = ["http-server:distro:sys"]\n')
    try:
        n.start("kernel")
        port = free_port()
        n.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "pw"})
        n.spawn("slow-app:demo:sys", APP_SOURCE, BINDINGS=json.dumps([{"path": "/"}]))
        n.wait_log("slow-app:demo:sys", "READY")
        attacker = n.process("attacker:demo:sys")
        result: list[requests.Response] = []
        client = threading.Thread(target=lambda: result.append(requests.get(
            f"http://127.0.0.1:{port}/slow-app:demo:sys/?do=sleep&s=1.5", timeout=15)))
        client.start()
        n.wait_log("slow-app:demo:sys", "sleeping")
        refused = 0
        for guess in range(200):
            attacker.send_request("attacker:demo:sys", b"", rsvp="http-server:distro:sys",
                                  id=guess, expects_response=5)
            try:
                attacker.await_message(timeout=2)
            except porch.NoCapability:
                refused += 1
        client.join(20)
        assert refused == 200
        assert result and result[0].status_code == 200
        assert json.loads(result[0].content)["method"] == "GET", "the app's own answer"
    finally:
        n.close()


def test_item12_a_process_cannot_take_a_service_id(node: Node) -> None:
    """Reserved ids (distro:sys) take the node's service token, which only the services
    the node starts read; a user process is refused, and the kernel goes on."""
    for pid in ("http-server:distro:sys", "http-client:distro:sys", "rpc:distro:sys",
                "anything:distro:sys"):
        with pytest.raises(porch.KernelRefused) as err:
            node.process(pid)
        assert err.value.code == "ReservedProcessId", pid
    assert "refused registration of http-server:distro:sys" in node.log("kernel")
    ok = node.process("user:demo:sys")
    assert "user:demo:sys" in {e.process_id for e in ok.registry().entries}


def test_item12_while_the_http_server_is_down_nobody_else_can_register_its_id(node: Node) -> None:
    port = free_port()
    node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "pw"})
    node.kill("http-server")
    wait_for(lambda: "http-server:distro:sys" not in node.registered(), what="http-server gone")
    rogue = node.spawn("http-server:distro:sys",
                       "import porch\nporch.Process('http-server:distro:sys')\nprint('registered')\n")
    assert rogue.wait(30) != 0
    assert "ReservedProcessId" in node.log("http-server:distro:sys")
    node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "pw"})
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200,
             what="the real http-server back")


def test_item12_a_user_process_started_by_the_node_never_sees_the_token(tmp_path: object) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from porch.node.home import NodeHome

    root = Path(str(tmp_path))
    home = NodeHome(root / "h")
    home.ensure()
    home.config_path.write_text(
        f'[[process]]\nid = "env:demo:sys"\ncommand = "{sys.executable} -c \'import os; '
        f'print(os.environ.get(\\"PORCH_SERVICE_TOKEN\\", \\"none\\"))\'"\n')
    env = {"PORCH_SERVICE_TOKEN": "secret-of-the-services", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "porch.cli.launch", "--home", str(home.root),
                          "env:demo:sys"], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"


def raw_register(node: Node, process_id: str, token: str = "") -> kernel_pb2.Envelope:
    """Register as a libzmq DEALER would, past the stub's own checks; the kernel's answer."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(node.home.kernel_endpoint)
    try:
        env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, source="x", target="kernel:distro:sys")
        env.control.register.process_id = process_id
        env.control.register.service_token = token
        sock.send(env.SerializeToString())
        return kernel_pb2.Envelope.FromString(sock.recv())
    finally:
        sock.close()


def test_item13_an_id_of_any_length_is_refused_and_the_log_stays_short(node: Node) -> None:
    for pid in ("x" * 100_000 + ":demo:sys", "a:" + "b" * 65 + ":c", "a:b:" + "c" * 254):
        answer = raw_register(node, pid)
        err = answer.control.error
        assert kernel_pb2.KernelError.Code.Name(err.code) == "InvalidProcessId"
        assert len(err.detail) < 500
    assert max(len(line) for line in node.log("kernel").splitlines()) < 1000
    assert node.process("a" * 64 + ":demo:sys").our == "a" * 64 + ":demo:sys"


def test_item12_a_wrong_token_is_refused_the_right_one_accepted(node: Node) -> None:
    answer = raw_register(node, "http-client:distro:sys", token="guess")
    assert kernel_pb2.KernelError.Code.Name(answer.control.error.code) == "ReservedProcessId"
    token = node.home.service_token.read_text().strip()
    answer = raw_register(node, "http-client:distro:sys", token=token)
    assert answer.control.WhichOneof("kind") == "registered"
