"""A hosted studio's first look at an image from outside, and its full check, in a child process.

Reading an image's header is Pillow's (or libheif's, or libavif's) work, most of it in Python
with the GIL held, before anything of ours can count it: review after review found one more
structure (TIFF fractions, EXIF entries naming the same bytes, JPEG tables, PNG texts, HEIC item
lists) that made one look cost seconds or gigabytes. `images` bounds every one found; this module
bounds the ones not found yet, by construction: the look runs in a child process, at low
priority, under a CPU and memory limit, and a file whose look costs more than an image's ever
does (`LOOK_CPU_S`, `LOOK_BYTES`) is refused. Every later look at an accepted file (the upload,
thumbnails, a region's blend) repeats the same reading, so each is bounded by what this one
measured. The full decode that checks an accepted file is made in a child too (`check`), under
limits in proportion to its pixels, so its memory and CPU are never the studio's own.

`Lookout` keeps a few children for the whole process, started when first needed, and replaced
when one dies, is stopped, or has grown. They hold no secret: their environment is emptied. The
wire is a one-letter request and a length-prefixed file in, one JSON line out.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from studio.images import (
    Header,
    ImageError,
    SourceImage,
    give_back_memory,
    open_source,
    peek,
    supported_formats,
)
from studio.params import nearest_aspect_ratio

# What a look at a real image costs, measured in the child (the repo's images, and 24-megapixel
# photos in every format the studio takes): at most 6 ms of CPU, and 6 MB of memory beyond the
# file's bytes (a WebP's look copies the file once). A look past either is refused: over ten
# times what any image's header needed, and the most any later look at the same bytes can cost.
LOOK_CPU_S = 0.1
LOOK_BYTES = 32 * 2**20  # and the file's own size
# What the child may take before the system stops it (a look far past the limits above is
# stopped there, not measured): CPU seconds past its own, and address space past its start;
# a check, besides, in proportion to the pixels it decodes (measured on 24-megapixel photos:
# at most 25 ns and 17 bytes a pixel, a JPEG's counted pixels 214 ns: `images.decode_pixels`).
_CPU_STOP_S = 2
_CPU_STOP_S_PER_PIXEL = 400e-9
_MEMORY_STOP_BYTES = 1024 * 2**20
_MEMORY_STOP_BYTES_PER_PIXEL = 32
# How long to wait for an answer on a busy machine before giving up on the child, past its CPU.
_ANSWER_WAIT_S = 30.0
# A child that holds more than this after answering ends (a large decode's memory is not kept).
_KEPT_BYTES = 256 * 2**20
# Children for the whole process: looks and checks (`Engine._decoding` runs at most three).
LOOKERS = 3
_LOOK, _CHECK = b"L", b"C"

COSTLY = ImageError(
    "costly",
    "The image file takes far more work to read than an image needs; save it again from an "
    "image editor.",
)


class _Gone(Exception):
    """The child died or did not answer: its look is refused and the child replaced."""


class _Child:
    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {"PYTHONPATH": root, "PATH": os.defpath, "LC_ALL": "C.UTF-8"}
        self._process = subprocess.Popen(
            [sys.executable, "-s", "-m", "studio.lookout"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=root,
            close_fds=True,
        )
        if self._process.stdin is None or self._process.stdout is None:
            raise _Gone
        self._stdin, self._stdout = self._process.stdin, self._process.stdout

    def ask(self, mode: bytes, data: bytes, pixels: int = 0) -> dict[str, Any]:
        stdin, stdout = self._stdin, self._stdout
        try:
            stdin.write(mode + struct.pack(">QQ", pixels, len(data)))
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, OSError):
            raise _Gone from None
        line = b""
        deadline = time.monotonic() + _ANSWER_WAIT_S + _cpu_stop(mode, pixels)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                raise _Gone
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise _Gone
            line += chunk
        answer: dict[str, Any] = json.loads(line)
        return answer

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._process.kill()
        with contextlib.suppress(Exception):
            self._process.wait(5)
        for pipe in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                pipe.close()


class Lookout:
    """`LOOKERS` children taking looks for the whole process; thread-safe (`look` blocks)."""

    def __init__(
        self, lookers: int = LOOKERS, *, cpu_s: float = LOOK_CPU_S, extra_bytes: int = LOOK_BYTES
    ) -> None:
        self._cpu_s, self._extra_bytes = cpu_s, extra_bytes
        self._idle: queue.LifoQueue[_Child | None] = queue.LifoQueue()
        for _ in range(lookers):
            self._idle.put(None)  # a place: a child is started when first needed
        self._closed = False

    def look(self, data: bytes) -> Header:
        """`images.peek(data)` as a child saw it, or `ImageError`: what peek refuses, or
        `COSTLY` when the look took more than `cpu_s`, or `extra_bytes` past the file's size (or
        was stopped)."""
        answer = self._ask(_LOOK, data)
        image_format, width, height, pixels = answer["header"]
        return Header(format=image_format, width=width, height=height, decode_pixels=pixels)

    def check(self, data: bytes, pixels: int) -> SourceImage:
        """`images.open_source(data)` made by a child, which decodes every pixel, or
        `ImageError`: what it refuses, or `COSTLY` when the decode went past CPU and memory in
        proportion to its `pixels` (what `look` said it would decode)."""
        answer = self._ask(_CHECK, data, pixels)
        image_format, width, height = answer["image"]
        return SourceImage(
            data=data,
            format=image_format,
            width=width,
            height=height,
            aspect_ratio=nearest_aspect_ratio(width, height),
        )

    def _ask(self, mode: bytes, data: bytes, pixels: int = 0) -> dict[str, Any]:
        child = self._idle.get()
        answer: dict[str, Any] | None = None
        try:
            if child is not None and not child.alive():
                child.close()  # (ended while idle: another starts; the file is not to blame)
                child = None
            if child is None:
                child = _Child()
            answer = child.ask(mode, data, pixels)
        except _Gone:
            pass
        finally:
            costly = answer is None or "costly" in answer
            if answer is not None and mode == _LOOK:
                costly = costly or (
                    answer["cpu_s"] > self._cpu_s or answer["bytes"] > self._extra_bytes + len(data)
                )
            ending = answer is not None and answer.get("ending", False)
            if child is not None and (costly or ending or self._closed):
                child.close()  # (a child that grew is not kept: it starts again when needed)
                child = None
            self._idle.put(child)
        if answer is not None and "refused" in answer:
            reason, message = answer["refused"]
            raise ImageError(reason, message)
        if costly or answer is None:
            raise COSTLY
        return answer

    def children(self) -> list[int]:
        """The process ids of the idle children (for tests and the bench)."""
        found: list[_Child | None] = []
        with contextlib.suppress(queue.Empty):
            while True:
                found.append(self._idle.get_nowait())
        for child in reversed(found):
            self._idle.put(child)
        return [child.pid for child in found if child is not None]

    def close(self) -> None:
        """Stop every child (a look under way finishes first)."""
        self._closed = True
        taken: list[_Child | None] = []
        with contextlib.suppress(queue.Empty):
            while True:
                taken.append(self._idle.get_nowait())
        for child in taken:
            if child is not None:
                child.close()
            self._idle.put(None)


_SHARED: Lookout | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> Lookout:
    """The process's lookout (its children start when first needed)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Lookout()
        return _SHARED


# -- the child ------------------------------------------------------------------------------------


def _status(field: bytes) -> int | None:
    """A number of kilobytes from Linux's /proc/self/status (None elsewhere), in bytes."""
    try:
        with open("/proc/self/status", "rb") as status:
            for row in status:
                if row.startswith(field + b":"):
                    return int(row.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Start the peak of resident memory (VmHWM) again from what is resident now."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    parts, left = [], size
    while left:
        part = source.read(left)
        if not part:
            raise EOFError
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _serve() -> None:
    """The child: read a file, look at it (or check it) under the limits, answer; until the
    pipe closes, or until it holds more memory than it should keep."""
    import resource

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else reaches the parent's pipe
    requests = sys.stdin.buffer
    os.nice(10)
    supported_formats()  # every plugin loaded now, not counted against the first look
    memory_limits = resource.getrlimit(resource.RLIMIT_AS)
    cpu_limits = resource.getrlimit(resource.RLIMIT_CPU)
    while True:
        try:
            request = _read_exactly(requests, 17)
            mode, (pixels, size) = request[:1], struct.unpack(">QQ", request[1:])
            data = _read_exactly(requests, size)
        except EOFError:
            return
        before = _status(b"VmRSS") if _reset_peak() else None
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = used.ru_utime + used.ru_stime
        stop_cpu = math.ceil(cpu_before + _cpu_stop(mode, pixels)) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (_within(stop_cpu, cpu_limits), cpu_limits[1]))
        if (size_now := _status(b"VmSize")) is not None:
            stop_memory = size_now + len(data) + _MEMORY_STOP_BYTES
            if mode == _CHECK:
                stop_memory += pixels * _MEMORY_STOP_BYTES_PER_PIXEL
            resource.setrlimit(
                resource.RLIMIT_AS, (_within(stop_memory, memory_limits), memory_limits[1])
            )
        try:
            answer = _answer(mode, data)
        except ImageError as exc:
            # (`images` says a MemoryError as "too large to decode": here it is the limit.)
            stopped = isinstance(exc.__context__, MemoryError)
            answer = {"costly": True} if stopped else {"refused": [exc.reason, str(exc)]}
        finally:
            resource.setrlimit(resource.RLIMIT_AS, memory_limits)
            resource.setrlimit(resource.RLIMIT_CPU, cpu_limits)
        used = resource.getrusage(resource.RUSAGE_SELF)
        peak = _status(b"VmHWM") if before is not None else None
        answer["cpu_s"] = used.ru_utime + used.ru_stime - cpu_before
        answer["bytes"] = max(0, peak - before) if peak is not None and before is not None else 0
        del data
        give_back_memory()
        ending = (_status(b"VmRSS") or 0) > _KEPT_BYTES
        answer["ending"] = ending
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()
        if ending:
            return


def _answer(mode: bytes, data: bytes) -> dict[str, Any]:
    if mode == _LOOK:
        return {"header": list(_header(peek(data)))}
    source = open_source(data)
    return {"image": [source.format, source.width, source.height]}


def _cpu_stop(mode: bytes, pixels: int) -> float:
    return _CPU_STOP_S + (pixels * _CPU_STOP_S_PER_PIXEL if mode == _CHECK else 0.0)


def _header(header: Header) -> tuple[str, int, int, int]:
    return header.format, header.width, header.height, header.decode_pixels


def _within(value: int, limits: tuple[int, int]) -> int:
    """`value` as a soft limit: no higher than the hard limit, nor than the soft one set."""
    import resource

    soft, hard = limits
    for limit in (soft, hard):
        if limit != resource.RLIM_INFINITY:
            value = min(value, limit)
    return value


if __name__ == "__main__":
    _serve()
