"""echo:demo:sys — the README's first user process: answers every request with its body.

    porch send echo:demo:sys hi          ->  echo: hi

No HTTP and no capabilities: it only talks to processes (and `porch send`) through the
kernel, with the blocking stub's `await_message` loop (kinode_process_lib's shape).
Run under a node (`porch up --demo`), or declared in porch.toml as any process:

    [[process]]
    id = "echo:demo:sys"
    command = "python examples/echo/app.py"
"""

from __future__ import annotations

import porch


def main() -> None:
    proc = porch.Process()  # id from $PORCH_PROCESS, kernel from $PORCH_HOME
    print(f"{proc.our} ready", flush=True)
    while True:
        msg = proc.await_message()
        if msg.is_request:
            proc.respond(msg, b"echo: " + msg.body, blob=msg.blob)


if __name__ == "__main__":
    main()
