"""Keep the rest's pure parts: masks, boxes, the feather and the blend, on small arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.params import ParamsError, RegionError, RegionRequest, parse_box
from studio.regions import FEATHER_PX, blend_files, fit_box, fit_mask, keep_the_rest, read_mask


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def test_a_mask_is_read_from_its_alpha_when_it_has_transparency_else_from_its_light():
    painted = Image.new("RGBA", (40, 30), (0, 0, 0, 0))  # black everywhere, drawn in alpha
    painted.paste((0, 0, 0, 255), (10, 10, 20, 20))
    light = Image.new("L", (40, 30), 0)
    light.paste(255, (10, 10, 20, 20))
    for image in (painted, light):
        mask = read_mask(_png(image))
        assert mask.shape == (30, 40)
        assert (mask[10:20, 10:20] == 255).all()
        assert mask.sum() == 100 * 255


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_png(Image.new("L", (40, 30), 0)), "empty"),
        (_png(Image.new("RGBA", (40, 30), (255, 255, 255, 0))), "empty"),  # white, but clear
        (b"GIF89a not really", "not an image"),
    ],
)
def test_a_mask_that_marks_nothing_or_is_not_an_image_is_refused_in_one_sentence(data, message):
    with pytest.raises(RegionError, match=message):
        read_mask(data)


def test_a_mask_of_another_size_is_scaled_and_stays_black_and_white():
    mask = np.zeros((30, 40), np.uint8)
    mask[10:20, 10:20] = 255
    scaled = fit_mask(mask, 400, 300)
    assert scaled.shape == (300, 400)
    assert set(np.unique(scaled)) == {0, 255}
    assert scaled[150, 150] == 255
    assert scaled[50, 50] == 0


def test_a_box_is_clipped_scaled_from_the_image_it_was_drawn_on_and_refused_outside():
    assert fit_box((90, 50, 40, 40), 100, 80) == (90, 50, 10, 30)
    assert fit_box((10, 10, 20, 20), 200, 160, drawn_on=(100, 80)) == (20, 20, 40, 40)
    with pytest.raises(RegionError, match="outside the image"):
        fit_box((120, 10, 5, 5), 100, 80)


@pytest.mark.parametrize(
    ("text", "message"), [("1,2,3", "four whole numbers"), ("1,2,0,4", "above zero")]
)
def test_a_box_is_four_whole_numbers_with_a_size(text, message):
    assert parse_box(" 1, 2,3 ,4") == (1, 2, 3, 4)
    with pytest.raises(ParamsError, match=message):
        parse_box(text)


def test_a_region_is_a_mask_or_a_box_not_both():
    with pytest.raises(ParamsError, match="mask"):
        RegionRequest(mask=b"x", box=(1, 1, 1, 1))


def test_the_blend_keeps_the_outside_bit_for_bit_and_feathers_inside_the_region():
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (300, 400, 4), dtype=np.uint8)  # with alpha
    output = np.full((300, 400, 3), 200, np.uint8)  # the same frame: nothing to register
    region = np.zeros((300, 400), np.uint8)
    region[50:250, 100:300] = 255
    blend = keep_the_rest(source, output, region)
    image = blend.image
    assert image.shape == source.shape
    outside = region == 0
    assert (image[outside] == source[outside]).all()
    assert (image[..., 3] == source[..., 3]).all()  # the source's alpha, everywhere
    # Deeper than the feather inside the region, the output alone (colour-matched).
    core = image[
        50 + FEATHER_PX + 1 : 250 - FEATHER_PX - 1, 100 + FEATHER_PX + 1 : 300 - FEATHER_PX - 1
    ]
    assert np.ptp(core[..., :3]) <= 2
    # On the region's edge, still mostly the source: the feather lies inside.
    edge = image[150, 100, :3].astype(int) - source[150, 100, :3].astype(int)
    assert np.abs(edge).max() <= 20


def test_opencv_loads_only_when_a_region_is_used():
    import subprocess
    import sys

    code = "import sys, studio.engine, studio.cli; print('cv2' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # the studio and the CLI start without it


def test_a_mask_of_more_pixels_than_any_photo_needs_is_refused_undecoded():
    buffer = io.BytesIO()
    Image.new("L", (6000, 5000), 255).save(buffer, "PNG")  # 30 megapixels, a few kilobytes
    with pytest.raises(RegionError, match="over 25 megapixels"):
        read_mask(buffer.getvalue())


def test_a_region_of_the_whole_image_takes_the_output_without_a_warning():
    """A box drawn over the whole image, edited into a result three times its size: the output
    everywhere (the suite turns warnings into errors: the feather's arithmetic overflowed and
    logged a warning for every such edit, review 52 F3)."""
    rng = np.random.default_rng(2)
    source = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    output = np.full((360, 480, 3), 90, np.uint8)
    region = np.full((120, 160), 255, np.uint8)
    image = keep_the_rest(source, output, region).image
    assert image.shape == source.shape
    assert (image == 90).all()  # the flat output, not a pixel of the noisy source


def _encoded(im: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def test_a_photo_in_display_p3_keeps_its_profile_and_colours_with_keep_the_rest():
    """Phones write Display P3 photos. The full-size result carried no profile: its kept pixels,
    the source's values, showed as sRGB, their colours shifted (audit 15)."""
    from tests.support.icc import display_p3

    p3 = display_p3()
    source = Image.new("RGB", (200, 150), (200, 120, 80))
    output = Image.new("RGB", (200, 150), (200, 120, 80))
    output.paste((20, 40, 220), (50, 50, 150, 100))
    for fmt in ("png", "jpeg"):
        blended = blend_files(
            _encoded(source, "JPEG", quality=95, icc_profile=p3),
            _encoded(output, icc_profile=p3),  # (the simulator's output declares it too)
            image_format=fmt,
            box=(50, 50, 100, 50),
        )
        with Image.open(io.BytesIO(blended.data)) as result:
            assert result.info.get("icc_profile") == p3
            assert result.size == (200, 150)


def test_an_output_in_srgb_is_converted_into_the_p3_source_s_colours_where_it_is_used():
    from PIL import ImageCms

    from tests.support.icc import display_p3, srgb

    p3 = display_p3()
    source = Image.new("RGB", (200, 150), (200, 120, 80))
    output = Image.new("RGB", (200, 150), (200, 120, 80))
    output.paste((20, 40, 220), (50, 50, 150, 100))
    blended = blend_files(
        _encoded(source, icc_profile=p3),
        _encoded(output, icc_profile=srgb()),
        image_format="png",
        box=(50, 50, 100, 50),
    )
    with Image.open(io.BytesIO(blended.data)) as result:
        pixels = np.asarray(result.convert("RGB"))
    # Outside: the source's values, bit for bit; inside: the output's blue, as P3 values.
    assert (pixels[10, 10] == (200, 120, 80)).all()
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), (20, 40, 220)),
        ImageCms.ImageCmsProfile(io.BytesIO(srgb())),
        ImageCms.ImageCmsProfile(io.BytesIO(p3)),
    ).getpixel((0, 0))
    assert expected != (20, 40, 220)
    assert np.abs(pixels[75, 100].astype(int) - expected).max() <= 2
