"""Provenance: every image a model made says so, in the standard way, inside the file itself.

An XMP packet with IPTC's `DigitalSourceType` = trainedAlgorithmicMedia (the value the IPTC
recommends, and C2PA and the EU AI Act's marking rule read) and `AISystemUsed` naming the model
(or the studio's simulator, which makes no AI images). It is written into the bytes as they are:
a PNG `iTXt` chunk named `XML:com.adobe.xmp` right after `IHDR`, a JPEG `APP1` segment right
after `SOI` (and `APP0`), the places XMP's own specification (part 3) gives. The pixels are never
decoded or re-encoded: a chained result goes on unchanged, and writing the packet is a copy of
the bytes. Pillow reads it back (`Image.info["XML:com.adobe.xmp"]`, `Image.info["xmp"]`).

With a certificate from the host, a C2PA manifest is signed into the file as well
(`C2paSigner`, `c2pa-python`, an optional extra). Imports the stdlib only (and c2pa-python when
signing).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PNG_XMP_KEY = "XML:com.adobe.xmp"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"
# A JPEG segment's length field counts itself (2 bytes) and holds at most 65535.
_JPEG_SEGMENT_MAX = 65533


def xmp_packet(system: str, *, simulated: bool = False) -> bytes:
    """The XMP packet for an image made by `system` (e.g. "FLUX.1 Kontext [pro]")."""
    description = (
        "Made by Kontext Studio's simulator, a stand-in for FLUX.1 Kontext used without a RunAPI "
        "key: a simulated edit, not an AI model's work."
        if simulated
        else f"Made by {system} (an AI model) through Kontext Studio."
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        f"    Iptc4xmpExt:DigitalSourceType={quoteattr(TRAINED_ALGORITHMIC_MEDIA)}\n"
        f"    Iptc4xmpExt:AISystemUsed={quoteattr(system)}\n"
        '    xmp:CreatorTool="Kontext Studio">\n'
        "   <dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{escape(description)}</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    ).encode()


def mark(data: bytes, image_format: str, packet: bytes) -> bytes:
    """`data` with `packet` as its XMP (any earlier XMP replaced); formats other than PNG and
    JPEG, and bytes that are not what they claim, come back unchanged."""
    if image_format == "png" and data.startswith(_PNG_SIGNATURE):
        return _png_with_xmp(data, packet)
    if image_format in ("jpeg", "jpg") and data.startswith(b"\xff\xd8"):
        return _jpeg_with_xmp(data, packet)
    return data


def _png_with_xmp(data: bytes, packet: bytes) -> bytes:
    # iTXt: keyword, NUL, compression flag 0, method 0, empty language tag and translated
    # keyword (each NUL-ended), then the UTF-8 text (PNG 1.2, 4.2.3.3).
    body = PNG_XMP_KEY.encode() + b"\x00\x00\x00\x00\x00" + packet
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    # The chunks are walked by their lengths alone, and the runs of them that stay are joined
    # once at the end: copying each chunk into a growing buffer copied a result three times
    # over on the engine's loop (6 % of the studio's CPU under 100 edits at once, py-spy).
    view = memoryview(data)
    pieces: list[bytes | memoryview] = [_PNG_SIGNATURE]
    kept_from = offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            return data  # truncated: leave it as it is
        if kind == b"iTXt" and data.startswith(PNG_XMP_KEY.encode() + b"\x00", offset + 8):
            pieces.append(view[kept_from:offset])  # an earlier XMP chunk: left out
            kept_from = end
        if kind == b"IHDR":
            pieces += [view[kept_from:end], chunk]
            kept_from = end
        offset = end
        if kind == b"IEND":
            break
    # (Whatever follows IEND, or a tail too short to be a chunk, is left out.)
    pieces.append(view[kept_from:offset])
    return b"".join(pieces)


def _jpeg_with_xmp(data: bytes, packet: bytes) -> bytes:
    payload = _JPEG_XMP_NAMESPACE + packet
    if len(payload) > _JPEG_SEGMENT_MAX:
        return data
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    out = bytearray(b"\xff\xd8")
    offset = 2
    placed = False
    # Markers before the image data: keep them (less any earlier XMP), placing ours after APP0.
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: the rest is image data
            break
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        end = offset + 2 + length
        if end > len(data):
            return data
        is_xmp = marker == 0xE1 and data[offset + 4 :].startswith(_JPEG_XMP_NAMESPACE)
        if not placed and marker != 0xE0:
            out += segment
            placed = True
        if not is_xmp:
            out += data[offset:end]
        offset = end
    if not placed:
        out += segment
    out += data[offset:]
    return bytes(out)


class C2paSigner:
    """Signs a C2PA manifest into each image a model made, with the host's certificate chain and
    private key (PEM; ES256, a P-256 key), through `c2pa-python` (the `c2pa` extra:
    `pip install 'kontext-studio[c2pa]'`). The manifest's `c2pa.created` action carries the
    same IPTC `digitalSourceType` and names the model as its software agent."""

    def __init__(self, cert_chain: bytes, private_key: bytes) -> None:
        try:
            import c2pa  # type: ignore[import-not-found, import-untyped, unused-ignore]
        except ImportError as exc:
            raise ValueError(
                "Signing C2PA manifests needs c2pa-python: pip install 'kontext-studio[c2pa]'."
            ) from exc
        self._c2pa: Any = c2pa
        info = c2pa.C2paSignerInfo(
            alg=b"es256", sign_cert=cert_chain, private_key=private_key, ta_url=None
        )
        self._signer = c2pa.Signer.from_info(info)

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path) -> C2paSigner:
        """The signer for a PEM certificate chain and key; ValueError with one sentence."""
        try:
            return cls(cert_path.read_bytes(), key_path.read_bytes())
        except OSError as exc:
            raise ValueError(
                f"The C2PA certificate or key cannot be read ({exc.strerror})."
            ) from exc

    def sign(self, data: bytes, image_format: str, system: str) -> bytes:
        """`data` with a signed manifest saying `system` made it. Blocking: call in a thread."""
        mime = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}[image_format]
        manifest = {
            "claim_generator_info": [{"name": "Kontext Studio"}],
            "format": mime,
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                "softwareAgent": {"name": system},
                            }
                        ]
                    },
                }
            ],
        }
        signed = io.BytesIO()
        builder = self._c2pa.Builder(json.dumps(manifest))
        builder.sign(self._signer, mime, io.BytesIO(data), signed)
        return signed.getvalue()


__all__ = ["PNG_XMP_KEY", "TRAINED_ALGORITHMIC_MEDIA", "C2paSigner", "mark", "xmp_packet"]
