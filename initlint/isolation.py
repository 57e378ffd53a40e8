"""Run a function in a child process with hard limits on wall time and memory.

The dynamic probe runs a model: a hostile or merely huge one can loop for hours or allocate
until the machine swaps. In a child process both are bounded for real: past the deadline the
child is killed (a timeout inside the same process can only be checked between operations,
never inside one), and its memory is capped twice, by an address-space limit set in the child
(``RLIMIT_AS``: an allocation past it fails at once with MemoryError) and by the parent, which
watches the child's resident memory and kills it past the cap. A result that arrives is kept;
one that does not becomes an :class:`Outcome` with the reason.

The child is a fresh interpreter (``spawn``): forking a process that has loaded torch can
deadlock, and nothing of the parent's state leaks in. The function and its arguments must
therefore be picklable (a module-level function).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

GIB = 1 << 30
# How often the parent looks at the child's resident memory.
WATCH_INTERVAL_S = 0.05


@dataclass
class Outcome:
    """What came back: ``value`` when ``ok``, else ``reason`` says why nothing did
    (``kind``: "timeout", "memory", "error" for an exception in the function, "died")."""

    ok: bool
    value: Any = None
    reason: str | None = None
    kind: str | None = None
    elapsed_s: float = 0.0


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_cap(model_bytes: int, floor: int = 2 * GIB, factor: int = 8) -> int:
    """A memory budget for running a model of ``model_bytes``: room for its weights, their
    gradients, optimizer state and activations (``factor`` times the weights, at least
    ``floor``), but never more than three quarters of what the machine has free now."""
    wanted = max(floor, factor * max(int(model_bytes), 0) + floor // 2)
    free = available_memory()
    return min(wanted, int(free * 0.75)) if free else wanted


def _resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _child(connection, function, args, kwargs, memory_bytes, preload) -> None:
    """In the child: import ``preload`` (so its mappings are not charged to the function),
    cap the address space, run, and send back ("ok", value) or ("memory"|"error", message)."""
    try:
        for module in preload:
            __import__(module)
        if memory_bytes:
            # Address space is not resident memory: libraries map far more than they touch, so
            # the cap is what is mapped now plus the budget.
            limit = _mapped_bytes() + memory_bytes
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        value = function(*args, **kwargs)
        message = ("ok", value)
    except MemoryError as exc:
        message = ("memory", f"MemoryError{': ' + str(exc) if str(exc) else ''}")
    except BaseException as exc:  # the child reports everything; the parent decides
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})" if last else ""
        message = ("error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}{where}")
    try:
        connection.send(message)
    except MemoryError:
        connection.send(("memory", "MemoryError while sending the result"))
    except Exception as exc:  # an unpicklable result
        connection.send(("error", f"the result could not be sent back ({type(exc).__name__}: {exc})"))
    finally:
        connection.close()


def run_isolated(
    function: Callable[..., Any],
    *args: Any,
    timeout_s: float,
    memory_bytes: int | None = None,
    preload: tuple[str, ...] = (),
    **kwargs: Any,
) -> Outcome:
    """``function(*args, **kwargs)`` in a child process, ended after ``timeout_s`` seconds of wall
    time (the child's start included) or once it holds more than ``memory_bytes``."""
    start = time.monotonic()
    deadline = start + timeout_s
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args, kwargs, memory_bytes, preload), daemon=True)
    process.start()
    sender.close()  # the child holds the only writer: EOF once it is gone
    message = None
    over_memory = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if receiver.poll(min(WATCH_INTERVAL_S, remaining)):
                try:
                    message = receiver.recv()
                except (EOFError, OSError):  # the child died before sending
                    message = None
                break
            if memory_bytes:
                resident = _resident_bytes(process.pid)
                if resident is not None and resident > memory_bytes:
                    over_memory = resident
                    break
            if not process.is_alive() and not receiver.poll(0):
                break
    finally:
        elapsed = time.monotonic() - start
        if process.is_alive():
            process.join(0.2 if message is not None else 0)
        if process.is_alive():
            process.kill()
            process.join(5)
        receiver.close()
    if message is not None:
        kind, payload = message
        if kind == "ok":
            return Outcome(True, payload, elapsed_s=elapsed)
        if kind == "memory":
            return Outcome(False, reason=f"ran out of its {_size(memory_bytes)} memory budget ({payload})", kind="memory", elapsed_s=elapsed)
        return Outcome(False, reason=payload, kind="error", elapsed_s=elapsed)
    if over_memory is not None:
        return Outcome(False, reason=f"stopped at {_size(over_memory)} resident, over its {_size(memory_bytes)} memory budget", kind="memory", elapsed_s=elapsed)
    if elapsed >= timeout_s:
        return Outcome(False, reason=f"stopped after {timeout_s:g} s (the time limit)", kind="timeout", elapsed_s=elapsed)
    code = process.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return Outcome(False, reason=f"the process running it died ({how})", kind="died", elapsed_s=elapsed)


def _size(count: int | None) -> str:
    if not count:
        return "unlimited"
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / (1 << 20):.0f} MiB"
