"""What the rest of the node says now, for the scrape and the node page (issue 13):
the kernel's registry and figures, the http-client's figures, supervisord's process
states, the start counts, porch.toml.

Each source is asked with a short deadline and may be missing (the kernel restarting,
the http-client down, a node not run by supervisord): what did not answer is named in
`errors` and left out, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
import xmlrpc.client
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porch.address import HTTP_CLIENT
from porch.node.config import ConfigError, NodeConfig, load_home
from porch.node.home import NodeHome
from porch.node.starts import read_starts
from porch.node.supervisor import Supervisor
from porch.process.aio import AsyncProcess
from porch.process.message import PorchError
from porch.wire import http_pb2, kernel_pb2, metrics_pb2

log = logging.getLogger("porch.http_server")

ASK_S = 2.0  # each source's deadline


@dataclass
class NodeNow:
    config: NodeConfig
    registry: kernel_pb2.Registry | None = None
    kernel_metrics: metrics_pb2.Metrics | None = None
    client_metrics: metrics_pb2.Metrics | None = None
    # supervisord's getAllProcessInfo (None: the node is not run by supervisord)
    supervised: list[dict[str, Any]] | None = None
    starts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # source -> why it is missing


class Gatherer:
    def __init__(self, home: NodeHome, proc: AsyncProcess, executor: Executor) -> None:
        self.home = home
        self.proc = proc
        self.executor = executor  # supervisord's XML-RPC blocks: it runs there
        self._config: tuple[tuple[float, float], NodeConfig] | None = None
        self._asking: asyncio.Future[tuple[list[dict[str, Any]] | None, str]] | None = None

    def config(self) -> NodeConfig:
        """porch.toml (with the demo's processes), read again when it changed."""
        stamp = (_mtime(self.home.config_path), _mtime(self.home.demo_config))
        if self._config is None or self._config[0] != stamp:
            try:
                self._config = stamp, load_home(self.home)
            except (ConfigError, OSError) as exc:
                if self._config is None:
                    log.warning("the node page cannot read porch.toml: %s", exc)
                    return NodeConfig()
        return self._config[1]

    async def now(self, metrics: bool) -> NodeNow:
        """Everything, asked at once. `metrics`: the services' figures too (the scrape)."""
        now = NodeNow(self.config())
        loop = asyncio.get_running_loop()
        asking = self._asking
        if asking is None or asking.done():  # (one call at a time: a wedged one is not queued behind)
            asking = self._asking = loop.run_in_executor(self.executor, self._supervisor)
        asks: list[Any] = [self._registry(now, metrics)]
        if metrics:
            asks.append(self._client(now))
        await asyncio.gather(*asks)
        try:
            now.supervised, problem = await asyncio.wait_for(asyncio.shield(asking), ASK_S)
        except TimeoutError:
            now.supervised, problem = None, f"supervisord did not answer within {ASK_S:g} s"
        if problem:
            now.errors["supervisord"] = problem
        now.starts = read_starts(self.home)
        return now

    async def _registry(self, now: NodeNow, metrics: bool) -> None:
        try:
            now.registry = await self.proc.registry(ASK_S, metrics=metrics)
        except PorchError as exc:
            now.errors["kernel"] = str(exc)
            return
        if metrics and now.registry.metrics:
            now.kernel_metrics = metrics_pb2.Metrics.FromString(now.registry.metrics)

    async def _client(self, now: NodeNow) -> None:
        action = http_pb2.HttpClientAction()
        action.metrics.SetInParent()
        try:
            reply = await self.proc.send_and_await_response(HTTP_CLIENT, action.SerializeToString(),
                                                            timeout=ASK_S)
            now.client_metrics = metrics_pb2.Metrics.FromString(reply.body)
        except PorchError as exc:
            now.errors["http-client"] = str(exc)
        except Exception as exc:  # an answer that is not a Metrics (another version)
            now.errors["http-client"] = f"unexpected answer: {exc}"

    def _supervisor(self) -> tuple[list[dict[str, Any]] | None, str]:
        if not self.home.supervisor_socket.exists():
            return None, ""
        try:
            return Supervisor(self.home).processes(), ""
        except (OSError, xmlrpc.client.Error) as exc:
            return None, str(exc)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
