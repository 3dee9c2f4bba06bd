"""The stub: a process's connection to the kernel (blocking and asyncio APIs)."""
