"""Every image a model made says so inside the file (IPTC DigitalSourceType in XMP, and which
model), read back with Pillow: the stored result (what downloads, the API, MCP and the CLI hand
out) and the images of an export. The simulator's images say they are simulated."""

from __future__ import annotations

import io
import zipfile

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
