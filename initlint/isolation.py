"""Run a function in a child process with hard limits on wall time and memory.

The dynamic probe runs a model: a hostile or merely huge one can loop for hours or allocate
until the machine swaps. In a child process both are bounded for real: past the deadline the
child (and anything it started) is killed -- a timeout inside the same process can only be
checked between operations, never inside one -- and its memory is capped twice, by an
address-space limit set in the child (``RLIMIT_AS``: an allocation past it fails at once with
MemoryError) and by the parent, which watches the child's resident memory and kills it past the
cap. A result that arrives is kept; one that does not becomes an :class:`Outcome` with the reason.

The child is a fresh interpreter started as ``python -c`` (not multiprocessing's ``spawn``, which
re-runs the caller's main script in the child: an API user's script without a ``__main__``
guard would lint itself again). Forking a process that has loaded torch can deadlock, and
nothing of the parent's state leaks in. The function and its arguments must therefore be
picklable (a module-level function); the child gets the parent's ``sys.path``.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

GIB = 1 << 30
# How often the parent looks at the child's resident memory.
WATCH_INTERVAL_S = 0.05
# The child's side of the result pipe, while a function runs there (see report_started).
_CHANNEL: Connection | None = None


@dataclass
class Outcome:
    """What came back: ``value`` when ``ok``, else ``reason`` says why nothing did
    (``kind``: "timeout", "memory", "error" for an exception in the function, "died")."""

    ok: bool
    value: Any = None
    reason: str | None = None
    kind: str | None = None
    elapsed_s: float = 0.0
    # Seconds from the start to the function's report_started() call (None: it did not call it).
    startup_s: float | None = None


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


def memory_cap(model_bytes: int, floor: int = 2 * GIB, factor: int = 8, activation_bytes: int = 0) -> int:
    """A memory budget for running a model of ``model_bytes``: room for its weights, their
    gradients and optimizer state (``factor`` times the weights) and for the activations a pass
    keeps for its backward (``activation_bytes``), at least ``floor``, but never more than three
    quarters of what the machine has free now."""
    wanted = max(floor, factor * max(int(model_bytes), 0) + max(int(activation_bytes), 0) + floor // 2)
    free = available_memory()
    return min(wanted, int(free * 0.75)) if free else wanted


def report_started() -> None:
    """Called by a function running in the child once its setup is done: from here on the
    parent counts ``timeout_s`` (before, ``startup_timeout_s``). Does nothing elsewhere."""
    if _CHANNEL is not None:
        _CHANNEL.send(("started", None))


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


def _child_main() -> None:
    """The child's entry point: read the job from stdin, import ``preload`` (so its mappings are
    not charged to the function), cap the address space, run, and send back ("ok", value) or
    ("memory"|"error", message) on the inherited descriptor."""
    global _CHANNEL
    job = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    _CHANNEL = channel = Connection(job["fd"], readable=False)
    sys.path[:] = job["path"]
    try:
        for module in job["preload"]:
            __import__(module)
        if job["memory_bytes"] and job["limit_address_space"]:
            # Address space is not resident memory: libraries map far more than they touch, so
            # the cap is what is mapped now plus the budget.
            limit = _mapped_bytes() + job["memory_bytes"]
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        function, args, kwargs = pickle.loads(job["call"])
        value = function(*args, **kwargs)
        message = ("ok", value)
    except MemoryError as exc:
        message = ("memory", f"MemoryError{': ' + str(exc) if str(exc) else ''}")
    except BaseException as exc:  # the child reports everything; the parent decides
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})" if last else ""
        message = ("error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}{where}")
    try:
        channel.send(message)
    except MemoryError:
        channel.send(("memory", "MemoryError while sending the result"))
    except Exception as exc:  # an unpicklable result
        channel.send(("error", f"the result could not be sent back ({type(exc).__name__}: {exc})"))
    finally:
        channel.close()


def run_isolated(
    function: Callable[..., Any],
    *args: Any,
    timeout_s: float,
    memory_bytes: int | None = None,
    preload: tuple[str, ...] = (),
    startup_timeout_s: float | None = None,
    limit_address_space: bool = True,
    **kwargs: Any,
) -> Outcome:
    """``function(*args, **kwargs)`` in a child process, ended after ``timeout_s`` seconds of wall
    time or once it holds more than ``memory_bytes`` resident.

    Without ``startup_timeout_s`` the child's start counts against ``timeout_s``. With it, the
    start (interpreter, ``preload``, and the function's own setup up to its
    :func:`report_started` call) has ``startup_timeout_s`` and ``timeout_s`` counts from there.
    ``limit_address_space=False`` keeps only the resident-memory watch (GPU drivers reserve
    far more address space than they use)."""
    start = time.monotonic()
    deadline = start + (startup_timeout_s if startup_timeout_s is not None else timeout_s)
    call = pickle.dumps((function, args, kwargs))  # fails here, in the caller, when not picklable
    read_fd, write_fd = os.pipe()
    job = {"fd": write_fd, "path": list(sys.path), "preload": tuple(preload), "memory_bytes": memory_bytes,
           "limit_address_space": limit_address_space, "call": call}
    try:
        # A session of its own: the deadline ends whatever the model started, too.
        process = subprocess.Popen(
            [sys.executable, "-c", "from initlint.isolation import _child_main; _child_main()"],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True,
        )
    finally:
        os.close(write_fd)  # the child holds the only writer: EOF once it is gone
    receiver = Connection(read_fd, writable=False)
    message = None
    over_memory = None
    startup_s = None
    timed_out = False
    try:
        try:
            process.stdin.write(pickle.dumps(job))
            process.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the child died at once: reported below
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if receiver.poll(min(WATCH_INTERVAL_S, remaining)):
                try:
                    message = receiver.recv()
                except (EOFError, OSError):  # the child died before sending
                    message = None
                    break
                if message[0] == "started":
                    startup_s = time.monotonic() - start
                    if startup_timeout_s is not None:
                        deadline = time.monotonic() + timeout_s
                    message = None
                    continue
                break
            if memory_bytes:
                resident = _resident_bytes(process.pid)
                if resident is not None and resident > memory_bytes:
                    over_memory = resident
                    break
            if process.poll() is not None and not receiver.poll(0):
                break
    finally:
        elapsed = time.monotonic() - start
        if process.poll() is None:
            try:
                process.wait(0.2 if message is not None else 0.001)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            _kill_session(process)
        receiver.close()
    if message is not None:
        kind, payload = message
        if kind == "ok":
            return Outcome(True, payload, elapsed_s=elapsed, startup_s=startup_s)
        if kind == "memory":
            return Outcome(False, reason=f"ran out of its {_size(memory_bytes)} memory budget ({payload})", kind="memory", elapsed_s=elapsed, startup_s=startup_s)
        return Outcome(False, reason=payload, kind="error", elapsed_s=elapsed, startup_s=startup_s)
    if over_memory is not None:
        return Outcome(False, reason=f"stopped at {_size(over_memory)} resident, over its {_size(memory_bytes)} memory budget", kind="memory", elapsed_s=elapsed, startup_s=startup_s)
    if timed_out:
        if startup_timeout_s is not None and startup_s is None:
            reason = f"stopped after {startup_timeout_s:g} s before it started (the start-up time limit)"
        else:
            reason = f"stopped after {timeout_s:g} s (the time limit)"
        return Outcome(False, reason=reason, kind="timeout", elapsed_s=elapsed, startup_s=startup_s)
    code = process.returncode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return Outcome(False, reason=f"the process running it died ({how})", kind="died", elapsed_s=elapsed, startup_s=startup_s)


def _kill_session(process: subprocess.Popen) -> None:
    """Kill the child and every process it started (its own session), then reap the child."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _size(count: int | None) -> str:
    if not count:
        return "unlimited"
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / (1 << 20):.0f} MiB"
