"""The RPC endpoint /rpc:distro:sys/message (docs/kinode.md §4.8): a local script
sends a message to any process over HTTP.

Body (JSON): {"process": "name:package:publisher", "body": "text", "expects_response":
seconds, "mime": ..., "data": base64 blob, "metadata": ...}. `node`, `inherit` and
`context` are accepted and ignored (one node). With expects_response the answer is
{"body": [bytes], "lazy_load_blob": null | {"mime": ..., "bytes": [codes of the
base64 text]}}, Kinode's shape. Kinode waits 15 s whatever was asked; porch honours the
request's seconds up to the node's request timeout, and answers 504/503/502 as the
HTTP bridge does.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from porch.address import is_valid
from porch.process.message import Message


@dataclass(frozen=True)
class RpcCall:
    process: str
    body: bytes
    expects_response: float | None
    metadata: str | None
    mime: str | None
    data: bytes | None


def parse_rpc(raw: bytes) -> RpcCall:
    try:
        msg = json.loads(raw)
    except ValueError:
        raise ValueError("body is not JSON") from None
    if not isinstance(msg, dict):
        raise ValueError("body must be a JSON object")
    process = msg.get("process")
    if not isinstance(process, str) or not is_valid(process):
        raise ValueError(f"process must be name:package:publisher, got {process!r}")
    expects = msg.get("expects_response")
    if expects is not None and (isinstance(expects, bool) or not isinstance(expects, int | float)
                                or expects <= 0):
        raise ValueError("expects_response must be a positive number of seconds")
    data = None
    if isinstance(msg.get("data"), str):
        try:
            data = base64.b64decode(msg["data"], validate=True)
        except (binascii.Error, ValueError):
            data = None  # Kinode: invalid base64 silently means no blob
    body = msg.get("body")
    return RpcCall(
        process=process,
        body=body.encode() if isinstance(body, str) else b"",
        expects_response=float(expects) if expects is not None else None,
        metadata=msg.get("metadata") if isinstance(msg.get("metadata"), str) else None,
        mime=msg.get("mime") if isinstance(msg.get("mime"), str) else None,
        data=data,
    )


def rpc_reply_body(reply: Message) -> bytes:
    blob = None
    if reply.blob is not None:
        encoded = base64.b64encode(reply.blob.bytes)
        blob = {"mime": reply.blob.mime, "bytes": list(encoded)}
    return json.dumps({"body": list(reply.body), "lazy_load_blob": blob}).encode()
