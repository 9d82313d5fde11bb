"""Every image a model made says so inside the file (IPTC DigitalSourceType in XMP, and which
model), read back with Pillow: the stored result (what downloads, the API, MCP and the CLI hand
out) and the images of an export. The simulator's images say they are simulated."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from studio.history import StepState
from studio.params import EditParams
from studio.provenance import PNG_XMP_KEY, TRAINED_ALGORITHMIC_MEDIA
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio


def xmp_of(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        found = image.info.get(PNG_XMP_KEY) or image.info.get("xmp") or b""
    return found.decode() if isinstance(found, bytes) else str(found)


@pytest.mark.parametrize("output_format", ["png", "jpeg"])
async def test_a_result_and_its_export_say_they_were_made_by_ai_and_by_which_model(
    sim, clean_env, output_format
):
    engine = make_engine(clean_env, sim.base_url, sim.api_key)
    try:
        source = make_image(96, 64)
        session = await engine.start_session(await engine.read_image(source), name="p")
        params = EditParams(prompt="make it blue", model="max", output_format=output_format)
        step = await engine.edit(session.session_id, params)
        assert step.state is StepState.COMPLETED
        stored = await engine.image_bytes(step.result)
        xmp = xmp_of(stored)
        assert f'DigitalSourceType="{TRAINED_ALGORITHMIC_MEDIA}"' in xmp
        assert 'AISystemUsed="FLUX.1 Kontext [max]"' in xmp
        # The pixels are the model's own: only the metadata was added.
        made = io.BytesIO(sim.tasks[step.task_id].result_bytes)
        with Image.open(made) as model_output, Image.open(io.BytesIO(stored)) as kept:
            assert model_output.tobytes() == kept.tobytes()
        # An upload is the visitor's own photo: not marked.
        assert "DigitalSourceType" not in xmp_of(await engine.image_bytes(session.current.result))
        archive = zipfile.ZipFile(io.BytesIO(await engine.export_session(session.session_id)))
        marked = [xmp_of(archive.read(n)) for n in archive.namelist() if n.startswith("images/")]
        assert sum(TRAINED_ALGORITHMIC_MEDIA in x for x in marked) == 1
    finally:
        await engine.aclose()


async def test_the_simulators_images_say_they_are_simulated(sim, clean_env):
    engine = make_engine(clean_env, sim.base_url, sim.api_key, simulated=True)
    try:
        session = await engine.start_session(None)
        step = await engine.edit(session.session_id, EditParams(prompt="a red bicycle"))
        xmp = xmp_of(await engine.image_bytes(step.result))
        assert TRAINED_ALGORITHMIC_MEDIA in xmp
        assert "simulator" in xmp
        assert "FLUX.1 Kontext [pro]" not in xmp
    finally:
        await engine.aclose()


def _test_certificates() -> tuple[bytes, bytes]:
    """A certificate chain (leaf, then its CA) and the leaf's key, PEM: what a host gives."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
            ]
        )

    def usage(*, signs: bool, certifies: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signs, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=certifies,
            crl_sign=certifies, encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject, issuer, public, *, ca: bool):  # type: ignore[no-untyped-def]
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(signs=not ca, certifies=ca), critical=True)
        )
        if not ca:  # what C2PA asks of a signing certificate (C2PA 2.1, 14.5.1)
            eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
            issuer_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
            builder = (
                builder.add_extension(eku, critical=False)
                .add_extension(issuer_id, critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            )
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate("Test CA", "Test CA", ca_key.public_key(), ca=True)
    leaf = certificate("Kontext Studio host", "Test CA", key.public_key(), ca=False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


async def test_with_the_hosts_certificate_each_result_carries_a_signed_c2pa_manifest(
    sim, clean_env
):
    c2pa = pytest.importorskip("c2pa")
    from studio.provenance import C2paSigner

    engine = make_engine(
        clean_env, sim.base_url, sim.api_key, signer=C2paSigner(*_test_certificates())
    )
    try:
        session = await engine.start_session(await engine.read_image(make_image(64, 48)))
        step = await engine.edit(session.session_id, EditParams(prompt="make it blue"))
        stored = await engine.image_bytes(step.result)
        report = json.loads(c2pa.Reader("image/png", io.BytesIO(stored)).json())
        assert report["validation_state"] == "Valid"  # signed and intact (by a test CA)
        manifest = report["manifests"][report["active_manifest"]]
        (actions,) = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
        (created,) = actions["data"]["actions"]
        assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        assert "FLUX.1 Kontext [pro]" in json.dumps(created)
        assert TRAINED_ALGORITHMIC_MEDIA in xmp_of(stored)  # the XMP is kept beside it
    finally:
        await engine.aclose()
