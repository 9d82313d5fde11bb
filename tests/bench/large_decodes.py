"""Benchmark (prints numbers, asserts nothing): a hosted studio's memory, and another visitor's
page, while visitors send edits of 24-megapixel photos.

    .venv/bin/python tests/bench/large_decodes.py PORT [--seconds 30] [--senders 4] [--photo F]

Run it against a hosted studio on loopback (see README, "Host it"; budgets high enough for the
run, e.g. KONTEXT_STUDIO_VISITOR_BUDGET_CENTS=3000 and IDENTITIES_PER_HOUR=500), and again
against another tree's studio on another port, side by side. Each sender is a visitor of its
own, from an address of its own (127.0.4.N), sending a 24-megapixel WebP (a gradient: 80 KB,
400 MB to decode) as API edits, one after another; the studio's process and its children are
sampled apart every 0.2 s; visitor V (127.0.0.60) loads `/` and `/config` every half second.
`--photo` sends another file instead (a JPEG, PNG, WebP or AVIF).
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def _photo() -> bytes:
    ramp = np.linspace(0, 255, 6000, dtype=np.uint8)
    pixels = np.broadcast_to(ramp[None, :, None], (4000, 6000, 3)).copy()
    pixels[::50] = 30
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


def _resident_mb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(int(r.split()[1]) for r in status if r.startswith("VmRSS:")) // 1024
    except (OSError, StopIteration):
        return 0


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _client(base: str, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, transport=transport, timeout=120)


def _visitor(base: str, address: str) -> httpx.Client:
    client = _client(base, address)
    for cookie in client.get("/").headers.get_list("set-cookie"):
        if cookie.startswith("kontext_visitor="):
            client.headers["Cookie"] = cookie.split(";")[0]
    return client


def _edit(client: httpx.Client, uri: str) -> str:
    inputs = [uri, "x", "pro", "match", "", "", "", False]
    queued = client.post("/gradio_api/call/edit_image", json={"data": inputs})
    if queued.status_code != 200:
        return f"http {queued.status_code}"
    event = None
    with client.stream("GET", f"/gradio_api/call/edit_image/{queued.json()['event_id']}") as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return f"{event}: {line[5:].strip()[:50]}"
    return "no answer"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--pid", type=int, help="the studio's process (found by its port)")
    parser.add_argument("--photo", type=Path, help="the file to send (a 24-megapixel WebP)")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    pid = args.pid or int(
        subprocess.check_output(["pgrep", "-f", "--", f"--port {args.port}"]).split()[0]
    )
    photo = args.photo.read_bytes() if args.photo else _photo()
    kind = args.photo.suffix.lstrip(".").replace("jpg", "jpeg") if args.photo else "webp"
    stop = time.monotonic() + args.seconds
    samples: list[tuple[int, int]] = []
    pages: list[float] = []
    outcomes: list[str] = []

    def sample() -> None:
        while time.monotonic() < stop + 3:
            samples.append((_resident_mb(pid), sum(map(_resident_mb, _children(pid)))))
            time.sleep(0.2)

    def visit() -> None:
        client = _visitor(base, "127.0.0.60")
        while time.monotonic() < stop:
            start = time.monotonic()
            client.get("/")
            client.get("/config")
            pages.append(time.monotonic() - start)
            time.sleep(0.5)

    def send(n: int) -> None:
        client = _visitor(base, f"127.0.4.{n + 1}")
        count = 0
        while time.monotonic() < stop:
            count += 1  # (new bytes each time: trailing bytes are ignored by decoders)
            data = photo + count.to_bytes(8, "big")
            outcomes.append(
                _edit(client, f"data:image/{kind};base64," + base64.b64encode(data).decode())
            )

    children = sum(map(_resident_mb, _children(pid)))
    print(f"studio {_resident_mb(pid)} MB before; its children {children} MB")
    threads = [threading.Thread(target=sample), threading.Thread(target=visit)]
    threads += [threading.Thread(target=send, args=(n,)) for n in range(args.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        f"studio {max(s[0] for s in samples)} MB at most, {_resident_mb(pid)} MB after; "
        f"its children {max(s[1] for s in samples)} MB at most"
    )
    ordered = sorted(pages)
    median, ninetieth = statistics.median(pages), ordered[int(len(ordered) * 0.9)]
    print(
        f"visitor V's page and config: {len(pages)} loads, median {median:.3f} s, "
        f"90th {ninetieth:.3f} s, worst {ordered[-1]:.3f} s"
    )
    print("edits:", Counter(o[:40] for o in outcomes).most_common(3))


if __name__ == "__main__":
    main()
