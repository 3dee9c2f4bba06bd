"""Who may message whom: the kernel's capability check, pure and cached.

The model (docs/kinode.md §0.3, simplified on purpose):
- every process is public (anyone may send it requests) unless the node config says
  `public = false`; the http-server and http-client services are never public;
- a process may message a non-public one only with a capability for it, granted in the
  node config (`capabilities = ["http-server:distro:sys"]`);
- the system services (http-server, http-client) may message any process: they act for
  someone who already passed this check. Kinode instead makes apps grant
  http-server a capability, and silently drops requests when they forget (its HTTP
  clients then wait 15 s for a 408); porch removes that trap.
- Responses need no capability: the kernel only delivers one that answers a request it
  saw going the other way, from the connection that request was delivered to.
- `rsvp` (send the answer elsewhere) is a system service's privilege, for a process it
  may message: anyone else could aim answers, Timeouts and Offlines at a stranger
  (`porch.kernel.router`).
- rpc:distro:sys, the identity of the http-server's RPC endpoint, is an ordinary
  sender (its grants come from porch.toml) and is never public.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from porch.address import HTTP_CLIENT, HTTP_SERVER, KERNEL, RPC

SYSTEM_SENDERS = frozenset({HTTP_SERVER, HTTP_CLIENT})
NEVER_PUBLIC = frozenset({HTTP_SERVER, HTTP_CLIENT, KERNEL, RPC})


class CapabilityPolicy:
    def __init__(
        self,
        grants: Mapping[str, Iterable[str]] | None = None,
        private: Iterable[str] = (),
    ) -> None:
        self._grants = {src: frozenset(caps) for src, caps in (grants or {}).items()}
        self._private = NEVER_PUBLIC | frozenset(private)
        self._cache: dict[tuple[str, str], bool] = {}

    def allows(self, source: str, target: str) -> bool:
        key = (source, target)
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._decide(source, target)
            if len(self._cache) > 100_000:  # ids are attacker-chosen; stay bounded
                self._cache.clear()
            self._cache[key] = verdict
        return verdict

    def _decide(self, source: str, target: str) -> bool:
        if source in SYSTEM_SENDERS:
            return True
        if target not in self._private:
            return True
        return target in self._grants.get(source, ())

    def grants_of(self, source: str) -> frozenset[str]:
        return self._grants.get(source, frozenset())
