"""What an edit sent to RunAPI, against the image the studio keeps for its source."""

from __future__ import annotations

import io

from PIL import Image


def _pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as im:
        return im.mode, im.size, im.tobytes()


def assert_sent_as_kept(sent: bytes, kept: bytes, *, original: bool) -> None:
    """A result goes on exactly as it came back; a person's own image with the same pixels,
    in the same encoding, its metadata (where, when, with what it was taken) left behind."""
    if not original:
        assert sent == kept
        return
    assert _pixels(sent) == _pixels(kept)
    assert len(sent) <= len(kept)
    assert len(kept) - len(sent) < 64 * 1024  # (not re-encoded: only metadata left out)
