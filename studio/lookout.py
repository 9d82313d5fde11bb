"""A hosted studio's work on images from visitors, done in child processes under limits.

Reading an image's header is Pillow's (or libheif's, or libavif's) work, most of it in Python
with the GIL held, before anything of ours can count it: review after review found one more
structure (TIFF fractions, EXIF entries naming the same bytes, JPEG tables, PNG texts, HEIC item
lists) that made one look cost seconds or gigabytes. `images` bounds every one found; this module
bounds the ones not found yet, by construction: the first look at a file from outside runs in a
child process, at low priority, under a CPU and memory limit, and a file whose look costs more
than an image's ever does (`LOOK_CPU_S`, `LOOK_BYTES`) is refused. Every later look at an
accepted file repeats the same reading, so each is bounded by what this one measured.

The decodes that follow are made in a child too, under limits in proportion to their pixels:
the full check of an accepted file (`check`), its conversion for upload (`prepare_upload`) and
its thumbnail (`make_thumbnail`), so that a visitor's 24-megapixel photo is never the studio's
own memory or CPU (a region's blend, on arrays at the source's full size, is still made here).

`Lookout` keeps a few children for the whole process, started when first needed, and replaced
when one dies, is stopped, or has grown. They hold no secret: their environment is emptied. The
wire: a one-letter request, a number and a length-prefixed file in; one JSON line out, followed
by the bytes the child made (a conversion's, a thumbnail's).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import math
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from studio.images import (
    MAX_SOURCE_PIXELS,
    Header,
    ImageError,
    SourceImage,
    UploadImage,
    describe,
    give_back_memory,
    make_thumbnail,
    open_source,
    peek,
    prepare_upload,
    supported_formats,
)
from studio.params import nearest_aspect_ratio

log = logging.getLogger(__name__)

# What a look at a real image costs, measured in the child (the repo's images, and 24-megapixel
# photos in every format the studio takes): at most 6 ms of CPU, and 6 MB of memory beyond the
# file's bytes (a WebP's look copies the file once). A look past either is refused: over ten
# times what any image's header needed, and the most any later look at the same bytes can cost.
LOOK_CPU_S = 0.1
LOOK_BYTES = 32 * 2**20  # and the file's own size
# The same for a check, in proportion to the pixels its look counted (`images.decode_pixels`):
# measured on 24-megapixel photos in every format, at most 16.3 bytes and 194 ns a counted
# pixel (a WebP's memory; a JPEG's CPU, decoded at an eighth of each side). A decode past
# these holds more than its look said it would (an AVIF whose box says 100 x 100 holding a
# 16384 x 16384 picture: 548 MB, review 50 F5) and is refused: it is never stored, so
# nothing decodes it again.
CHECK_CPU_S = 0.25
CHECK_CPU_S_PER_PIXEL = 400e-9
CHECK_BYTES_PER_PIXEL = 24  # and `LOOK_BYTES`, and the file's own size
# What a check or a conversion is expected to take a pixel, for the order children's places
# are handed out in (`_Places`): about what a decode of a large PNG took here.
WORK_S_PER_PIXEL = 50e-9
# What the child may take before the system stops it (a look far past the limits above is
# stopped there, not measured): CPU seconds past its own, and address space past its start;
# a decode, besides, in proportion to the pixels it may decode (measured on 24-megapixel photos:
# at most 25 ns and 17 bytes a pixel, a JPEG's counted pixels 214 ns: `images.decode_pixels`).
_CPU_STOP_S = 1
_CPU_STOP_S_PER_PIXEL = 400e-9
# (A look's memory stop leaves room for the two canvases libwebp allocates for an animated
# WebP at the pixel cap as Pillow opens it: 640 MB, untouched.)
_MEMORY_STOP_BYTES = {b"L": 1024 * 2**20, b"C": 512 * 2**20}
_MEMORY_STOP_BYTES_DEFAULT = 1024 * 2**20
_MEMORY_STOP_BYTES_PER_PIXEL = 32
# How long to wait for an answer, past the CPU a request may take, before giving up on a child
# that neither answers nor ends: a child works at low priority, and on a machine kept busy it
# may take many times its CPU in time (a false "costly" under load: review 51 F1).
_ANSWER_WAIT_S = 120.0
# A child that holds more than this after answering ends (a large decode's memory is not kept).
_KEPT_BYTES = 256 * 2**20
# Children for the whole process: looks and checks (`Engine._decoding` runs at most three),
# uploads' conversions and thumbnails.
LOOKERS = 3
# What a child is asked: look at a header, check a whole image, convert a stored one for upload,
# or make its thumbnail.
_LOOK, _CHECK, _UPLOAD, _THUMBNAIL = b"L", b"C", b"U", b"T"
_MODE_NAMES = {_LOOK: "look at", _CHECK: "check", _UPLOAD: "convert", _THUMBNAIL: "shrink"}

# A 1 x 1 PNG: what `Lookout.ready` asks a child to look at.
_READY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000000000500010d0a2db40000000049454e44ae426082"
)

COSTLY = (
    "The image file takes far more work to read than an image needs; save it again from an "
    "image editor."
)
BUSY = "The studio is too busy to read this image just now; try again in a moment."


class _Gone(Exception):
    """The child ended before it answered (stopped at a limit, or crashed on the file): the
    request is refused and the child replaced."""


class _Late(Exception):
    """The child neither answered nor ended in time: the studio is busy, not the file at fault."""


def _child_command() -> tuple[list[str], dict[str, str], str]:
    """How a child starts: this interpreter, finding every module where this process found it
    (a virtual environment, the user's site, PYTHONPATH: review 50 F4), in an environment that
    holds nothing else (no key); and decoding on one thread, in few memory arenas."""
    root = str(Path(__file__).resolve().parents[1])
    path = dict.fromkeys([root, *(p for p in sys.path if p and os.path.isdir(p))])
    env = {
        "PYTHONPATH": os.pathsep.join(path),
        "PATH": os.defpath,
        "LC_ALL": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",
    }
    return [sys.executable, "-s", "-m", "studio.lookout"], env, root


class _Child:
    def __init__(self) -> None:
        command, env, root = _child_command()
        # What it says as it ends (Python's traceback, or `faulthandler`'s on a crash): read
        # when it ends before answering, to say why in the log.
        self._said = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the child: `close`)
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._said,
            env=env,
            cwd=root,
            close_fds=True,
        )
        self.answered = False
        if self._process.stdin is None or self._process.stdout is None:
            raise _Gone
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        os.set_blocking(self._stdin.fileno(), False)  # (`_send` waits for room itself)

    def ask(self, mode: bytes, data: bytes, number: int = 0) -> tuple[dict[str, Any], bytes]:
        """The child's answer to one request, and the bytes it made."""
        deadline = time.monotonic() + _ANSWER_WAIT_S + _cpu_stop(mode, number)
        self._send(mode + struct.pack(">QQ", number, len(data)), deadline)
        self._send(data, deadline)
        received = b""
        while b"\n" not in received:
            received += self._receive(deadline)
        line, _, made = received.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        while len(made) < answer.get("made", 0):
            made += self._receive(deadline)
        self.answered = True
        return answer, made

    def _send(self, data: bytes, deadline: float) -> None:
        """Write `data` to the child as it reads it (a child that stops reading fills the pipe:
        no write waits past `deadline`)."""
        view, fd = memoryview(data), self._stdin.fileno()
        while view:
            if not _ready(fd, select.POLLOUT, deadline):
                raise _Late
            try:
                view = view[os.write(fd, view[: 1 << 16]) :]
            except BlockingIOError:
                continue  # (less room than that: wait for more)
            except OSError:  # (BrokenPipeError: it ended)
                raise _Gone from None

    def _receive(self, deadline: float) -> bytes:
        if not _ready(self._stdout.fileno(), select.POLLIN, deadline):
            raise _Late
        chunk = os.read(self._stdout.fileno(), 1 << 20)
        if not chunk:
            raise _Gone
        return chunk

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def report_end(self, *, first: bool) -> None:
        """Log that the child ended before it answered, how, and the end of what it said."""
        with contextlib.suppress(Exception):
            self._process.wait(5)
        code = self._process.poll()
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        said = b""
        with contextlib.suppress(OSError):
            self._said.seek(0, os.SEEK_END)
            self._said.seek(max(0, self._said.tell() - 2048))
            said = self._said.read()
        lines = said.decode("utf-8", "replace").strip().splitlines()
        global _LAST_REPORT
        if time.monotonic() - _LAST_REPORT < _REPORT_EVERY_S:
            return  # (a visitor sending file after file that ends children: said once a while)
        _LAST_REPORT = time.monotonic()
        log.warning(
            "An image worker ended before it answered (%s)%s: %s",
            how,
            ", at its first request" if first else "",
            lines[-1] if lines else "it said nothing",
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._process.kill()
        with contextlib.suppress(Exception):
            self._process.wait(5)
        for pipe in (self._stdin, self._stdout, self._said):
            with contextlib.suppress(OSError):
                pipe.close()


# How often a child's end is logged at most (`_Child.report_end`), and when it last was.
_REPORT_EVERY_S = 10.0
_LAST_REPORT = -_REPORT_EVERY_S


class _Places:
    """The children's places, handed to waiting threads by when each asked plus the time its
    work is expected to take (`take`): a small image's check goes ahead of large ones asked for
    less than their own time before it (forty fresh visitors' 7.8-megapixel images held
    another's 64 x 64 upload for seconds, review 53 F1), and nothing waits for work asked after
    it by more than its own expected time. (A `Queue` lets a thread that asks again at once take
    a place before one woken to take it: small requests got 2 turns in a minute against large
    ones' 64, review 51 F3.)"""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._free: list[_Child | None] = [None] * count  # (a child starts when first needed)
        self._waiting: list[tuple[float, int, list[Any]]] = []
        self._arrivals = itertools.count()

    def take(self, work_s: float = 0.0) -> _Child | None:
        """A place, for work expected to take `work_s` seconds."""
        with self._lock:
            if self._free and not self._waiting:
                return self._free.pop()
            waiter: list[Any] = [threading.Event(), None]
            due = time.monotonic() + work_s
            heapq.heappush(self._waiting, (due, next(self._arrivals), waiter))
        waiter[0].wait()
        child: _Child | None = waiter[1]
        return child

    def give(self, child: _Child | None) -> None:
        with self._lock:
            if self._waiting:
                _, _, waiter = heapq.heappop(self._waiting)
                waiter[1] = child
                waiter[0].set()
            else:
                self._free.append(child)

    def idle(self) -> list[_Child | None]:
        with self._lock:
            return list(self._free)


def _ready(fd: int, event: int, deadline: float) -> bool:
    """Whether `fd` is ready for `event` (or closed) before `deadline`. (`poll`, not `select`,
    which refuses a descriptor past 1023: a child started while a thousand connections were open
    could not be read, and every image failed: review 51 F2.)"""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(left * 1000))


class Lookout:
    """`lookers` children doing image work for the whole process; thread-safe (each call
    blocks its thread until a child has answered)."""

    def __init__(
        self, lookers: int = LOOKERS, *, cpu_s: float = LOOK_CPU_S, extra_bytes: int = LOOK_BYTES
    ) -> None:
        self._cpu_s, self._extra_bytes = cpu_s, extra_bytes
        self._places = _Places(lookers)
        self._closed = False

    def ready(self) -> None:
        """Raise `RuntimeError`, saying why, when a child cannot work here (at a hosted
        studio's start: otherwise every image would be refused, as too costly)."""
        try:
            self.look(_READY_PNG)
            return
        except ImageError:
            pass
        command, env, root = _child_command()
        tried = subprocess.run(
            [*command[:-2], "-c", "import studio.lookout"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = tried.stderr.strip().splitlines()
        why = lines[-1] if lines else f"exit code {tried.returncode}"
        raise RuntimeError(f"The studio's image workers cannot start: {why}")

    def look(self, data: bytes) -> Header:
        """`images.peek(data)` as a child saw it, or `ImageError`: what peek refuses; a "costly"
        one when the look took more than `cpu_s`, or `extra_bytes` past the file's size (or was
        stopped); a "busy" one when the child gave no answer in time."""
        answer, _ = self._ask(_LOOK, data)
        image_format, width, height, pixels = answer["header"]
        return Header(format=image_format, width=width, height=height, decode_pixels=pixels)

    def check(self, data: bytes, pixels: int) -> SourceImage:
        """`images.open_source(data)` made by a child, which decodes every pixel, or
        `ImageError`: what it refuses; a "costly" one when the decode went past CPU and memory
        in proportion to its `pixels` (what `look` said it would decode); a "busy" one."""
        answer, _ = self._ask(_CHECK, data, pixels, work_s=pixels * WORK_S_PER_PIXEL)
        image_format, width, height = answer["image"]
        return SourceImage(
            data=data,
            format=image_format,
            width=width,
            height=height,
            aspect_ratio=nearest_aspect_ratio(width, height),
        )

    def prepare_upload(self, source: SourceImage) -> UploadImage:
        """`images.prepare_upload(source)` made by a child, for a stored image (checked when it
        came in)."""
        pixels = source.width * source.height
        answer, made = self._ask(_UPLOAD, source.data, work_s=pixels * WORK_S_PER_PIXEL)
        file_name, mime_type, width, height = answer["upload"]
        return UploadImage(
            data=made if answer["made"] else source.data,
            file_name=file_name,
            mime_type=mime_type,
            width=width,
            height=height,
        )

    def make_thumbnail(self, data: bytes, max_side: int) -> bytes:
        """`images.make_thumbnail(data, max_side=max_side)` made by a child, for a stored image."""
        return self._ask(_THUMBNAIL, data, max_side)[1]

    def _ask(
        self, mode: bytes, data: bytes, number: int = 0, *, work_s: float = 0.0
    ) -> tuple[dict[str, Any], bytes]:
        """`mode`'s answer from a child, and what it made; `work_s`: the time it is expected to
        take (a look, or a thumbnail, of which one is made at a time: none)."""
        child = self._places.take(work_s)
        answer: dict[str, Any] | None = None
        made, late = b"", False
        try:
            if child is not None and not child.alive():
                child.close()  # (ended while idle: another starts; the file is not to blame)
                child = None
            if child is None:
                child = _Child()
            answer, made = child.ask(mode, data, number)
        except _Gone:
            if child is not None:
                child.report_end(first=not child.answered)
        except _Late:
            late = True
            log.warning("An image worker gave no answer in time; its request is refused as busy.")
        except Exception:  # (not the file's doing: said as busy, and the child replaced)
            late = True
            log.exception("An image worker could not be asked")
        finally:
            costly = (
                answer is None
                or "costly" in answer
                or self._past_limits(mode, answer, data, number)
            )
            if costly and answer is not None:
                log.info(
                    "An image was refused as too costly to %s: %.3f s of CPU, %d bytes past "
                    "its %d (%d pixels counted)",
                    _MODE_NAMES.get(mode, "read"),
                    float(answer.get("cpu_s", 0.0)),
                    int(answer.get("bytes", 0)) - len(data),
                    len(data),
                    number,
                )
            ending = answer is not None and answer.get("ending", False)
            if child is not None and (costly or ending or self._closed):
                child.close()  # (a child that grew is not kept: it starts again when needed)
                child = None
            self._places.give(child)
        if answer is not None and "refused" in answer:
            reason, message = answer["refused"]
            raise ImageError(reason, message)
        if late:
            raise ImageError("busy", BUSY)
        if costly or answer is None:
            raise ImageError("costly", COSTLY)
        return answer, made

    def _past_limits(self, mode: bytes, answer: dict[str, Any], data: bytes, pixels: int) -> bool:
        """Whether a look, or a check of `pixels`, cost more than an image's ever does."""
        cpu_s, size = float(answer["cpu_s"]), int(answer["bytes"]) - len(data)
        if mode == _LOOK:
            return cpu_s > self._cpu_s or size > self._extra_bytes
        if mode == _CHECK:
            return (
                cpu_s > CHECK_CPU_S + CHECK_CPU_S_PER_PIXEL * pixels
                or size > self._extra_bytes + CHECK_BYTES_PER_PIXEL * pixels
            )
        return False  # (a stored image's conversion or thumbnail: it was checked)

    def children(self) -> list[int]:
        """The process ids of the idle children (for tests and the bench)."""
        return [child.pid for child in self._places.idle() if child is not None]

    def close(self) -> None:
        """Stop every idle child (one at work stops when it answers)."""
        self._closed = True
        for child in self._places.idle():
            if child is not None:
                child.close()


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


def _serve() -> None:
    """The child: read a request, do it under the limits, answer; until the pipe closes, or
    until it holds more memory than it should keep."""
    import faulthandler
    import resource
    import warnings

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else reaches the parent's pipe
    warnings.simplefilter("ignore")  # (Pillow's, about a visitor's file: said nowhere)
    faulthandler.enable()  # (a crash says where, for the parent's log)
    requests = sys.stdin.buffer
    os.nice(10)
    supported_formats()  # every plugin loaded now, not counted against the first look
    _one_thread()
    memory_limits = resource.getrlimit(resource.RLIMIT_AS)
    cpu_limits = resource.getrlimit(resource.RLIMIT_CPU)
    while True:
        try:
            request = _read_exactly(requests, 17)
            mode, (number, size) = request[:1], struct.unpack(">QQ", request[1:])
            data = _read_exactly(requests, size)
        except EOFError:
            return
        before = _status(b"VmRSS") if _reset_peak() else None
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = used.ru_utime + used.ru_stime
        stop_cpu = math.ceil(cpu_before + _cpu_stop(mode, number))  # (whole seconds)
        resource.setrlimit(resource.RLIMIT_CPU, (_within(stop_cpu, cpu_limits), cpu_limits[1]))
        if (size_now := _status(b"VmSize")) is not None:
            stop_memory = size_now + len(data)
            stop_memory += _MEMORY_STOP_BYTES.get(mode, _MEMORY_STOP_BYTES_DEFAULT)
            stop_memory += _pixels(mode, number) * _MEMORY_STOP_BYTES_PER_PIXEL
            resource.setrlimit(
                resource.RLIMIT_AS, (_within(stop_memory, memory_limits), memory_limits[1])
            )
        made = b""
        try:
            answer, made = _answer(mode, number, data)
        except ImageError as exc:
            # (`images` says a MemoryError as "too large to decode": here it is the limit.)
            stopped = isinstance(exc.__context__, MemoryError)
            answer = {"costly": True} if stopped else {"refused": [exc.reason, str(exc)]}
        except MemoryError:
            answer = {"costly": True}
        finally:
            resource.setrlimit(resource.RLIMIT_AS, memory_limits)
            resource.setrlimit(resource.RLIMIT_CPU, cpu_limits)
        used = resource.getrusage(resource.RUSAGE_SELF)
        peak = _status(b"VmHWM") if before is not None else None
        answer["cpu_s"] = used.ru_utime + used.ru_stime - cpu_before
        answer["bytes"] = max(0, peak - before) if peak is not None and before is not None else 0
        answer["made"] = len(made)
        del data
        give_back_memory()
        answer["ending"] = ending = (_status(b"VmRSS") or 0) > _KEPT_BYTES + len(made)
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.write(made)
        answers.flush()
        if ending:
            return


def _answer(mode: bytes, number: int, data: bytes) -> tuple[dict[str, Any], bytes]:
    if mode == _LOOK:
        header = peek(data)
        fields = [header.format, header.width, header.height, header.decode_pixels]
        return {"header": fields}, b""
    if mode == _CHECK:
        source = open_source(data)
        return {"image": [source.format, source.width, source.height]}, b""
    if mode == _UPLOAD:
        upload = prepare_upload(describe(data))
        fields = [upload.file_name, upload.mime_type, upload.width, upload.height]
        return {"upload": fields}, (b"" if upload.data is data else upload.data)
    if mode == _THUMBNAIL:
        return {}, make_thumbnail(data, max_side=number)
    raise ValueError(f"unknown request {mode!r}")


def _pixels(mode: bytes, number: int) -> int:
    """The most pixels a request may decode: a check's, as its look said; a stored image's
    conversion or thumbnail, the most a stored image may have; a look's, none."""
    if mode == _CHECK:
        return number
    return MAX_SOURCE_PIXELS if mode in (_UPLOAD, _THUMBNAIL) else 0


def _cpu_stop(mode: bytes, number: int) -> float:
    return _CPU_STOP_S + _pixels(mode, number) * _CPU_STOP_S_PER_PIXEL


def _one_thread() -> None:
    """Decode on this thread alone: a child is one of a few working at once, and a decoder's
    threads (one a core, for AVIF and HEIC) would count against its memory limit."""
    import pillow_heif
    from PIL import AvifImagePlugin

    AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    pillow_heif.options.DECODE_THREADS = 1


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
