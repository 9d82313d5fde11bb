"""Hostile bytes: only `ImageError` escapes, and memory stays within the documented bound.

Pillow keeps pixels in C memory that tracemalloc cannot see (a 48 MB image shows as under 1 KB),
so pixel memory is measured as peak RSS growth in a fresh interpreter; tracemalloc checks copies.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.images import MAX_SOURCE_BYTES, ImageError, make_thumbnail, open_source, prepare_upload
from tests.support import corpus

SEEDS = [
    corpus.encode(corpus.photo((24, 16)), "PNG"),
    corpus.encode(corpus.photo((24, 16)), "JPEG"),
    corpus.encode(corpus.photo((24, 16), "RGBA"), "PNG"),
    corpus.transparent_gif(),
    corpus.animated_gif(),
    corpus.rotated_jpeg((24, 16)),
    corpus.png16_rgb(),
]
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid seed with bytes overwritten, cut out or inserted: the shapes real damage takes."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["overwrite", "cut", "insert", "truncate"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "overwrite":
            data[at : at + len(chunk)] = chunk
        elif kind == "cut":
            del data[at : at + len(chunk)]
        elif kind == "insert":
            data[at:at] = chunk
        else:
            del data[max(at, 1) :]
        if not data:
            break
    return bytes(data)


def run_everything(data: bytes) -> None:
    try:
        source = open_source(data)
    except ImageError:
        return
    prepare_upload(source, max_side=16)
    make_thumbnail(data, max_side=8)


@FUZZ
@given(st.binary(max_size=4096))
def test_only_image_error_escapes_when_the_bytes_are_random(data: bytes):
    run_everything(data)


@FUZZ
@given(mutated_images())
def test_only_image_error_escapes_when_a_valid_image_is_damaged(data: bytes):
    with contextlib.suppress(ImageError):
        run_everything(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(corpus.png_bomb(), id="png-bomb"),
        pytest.param(bytes(MAX_SOURCE_BYTES + 1), id="over-the-byte-cap"),
    ],
)
def test_refusing_copies_no_bytes_when_a_file_is_hostile(data: bytes):
    tracemalloc.start()
    try:
        with pytest.raises(ImageError):
            open_source(data)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1024 * 1024


# Runs in a fresh interpreter so that peak RSS reflects this one image. Prints the growth in bytes.
_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from studio.images import ImageError, make_thumbnail, open_source, prepare_upload
    from tests.support import corpus

    for warm in (corpus.encode(corpus.photo((64, 48)), "JPEG"), corpus.png16_rgb()):
        make_thumbnail(warm)
        prepare_upload(open_source(warm))  # load the codecs before measuring
    data = Path(sys.argv[1]).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        make_thumbnail(data)
        prepare_upload(open_source(data))
    except ImageError:
        pass
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * (1 if sys.platform == "darwin" else 1024))
    """
)


def peak_growth_bytes(path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=60,
    )
    return int(done.stdout.strip())


@pytest.mark.parametrize(
    ("build", "bound_bytes"),
    [
        # A bomb is refused on its header: no pixel buffer is ever allocated.
        pytest.param(corpus.png_bomb, 8 * 1024 * 1024, id="png-bomb"),
        pytest.param(corpus.jpeg_bomb, 8 * 1024 * 1024, id="jpeg-bomb"),
        # The documented bound: under 2 x width x height x 4 bytes (12 MP PNG: 96 MB).
        pytest.param(
            lambda: corpus.encode(corpus.photo((4000, 3000)), "PNG", compress_level=1),
            2 * 4000 * 3000 * 4,
            id="12-megapixel-png",
        ),
        # JPEG decodes at a reduced scale (draft): under one full decode (24 MP: 96 MB).
        pytest.param(
            lambda: corpus.encode(corpus.photo((6000, 4000)), "JPEG", quality=90),
            6000 * 4000 * 4,
            id="24-megapixel-jpeg",
        ),
    ],
)
def test_memory_stays_within_the_documented_bound(tmp_path: Path, build, bound_bytes: int):
    path = tmp_path / "image"
    path.write_bytes(build())
    assert peak_growth_bytes(path) < bound_bytes
