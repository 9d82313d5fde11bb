from __future__ import annotations

import pytest

from studio.params import (
    EditParams,
    ParamsError,
    format_cents,
    nearest_aspect_ratio,
)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        pytest.param(1000, 1000, "1:1", id="square"),
        pytest.param(4032, 3024, "4:3", id="phone-landscape"),
        pytest.param(3024, 4032, "3:4", id="phone-portrait"),
        pytest.param(1920, 1080, "16:9", id="full-hd"),
        pytest.param(1080, 1920, "9:16", id="story"),
        pytest.param(3440, 1440, "21:9", id="ultrawide"),
        pytest.param(10000, 100, "21:9", id="extreme-strip"),
        pytest.param(100, 10000, "9:16", id="extreme-tower"),
        pytest.param(1, 1, "1:1", id="one-pixel"),
        pytest.param(451, 300, "4:3", id="chelsea-3-2"),
    ],
)
def test_nearest_aspect_ratio_keeps_the_orientation_of_the_source(width, height, expected):
    assert nearest_aspect_ratio(width, height) == expected


def test_nearest_aspect_ratio_never_turns_portrait_into_landscape():
    for height in range(101, 400, 7):
        ratio = nearest_aspect_ratio(100, height)
        w, h = (int(x) for x in ratio.split(":"))
        assert w <= h


def test_validated_strips_the_prompt_when_it_has_surrounding_space():
    assert EditParams(prompt="  make it blue \n").validated(editing=True).prompt == "make it blue"


@pytest.mark.parametrize(
    ("params", "editing", "field"),
    [
        pytest.param(EditParams(prompt="   "), True, "prompt", id="blank-prompt"),
        pytest.param(EditParams(prompt="x" * 5000), True, "prompt", id="novel"),
        pytest.param(EditParams(prompt="a", model="ultra"), True, "model", id="bad-model"),  # type: ignore[arg-type]
        pytest.param(EditParams(prompt="a", aspect_ratio="5:4"), True, "aspect_ratio", id="ratio"),
        pytest.param(EditParams(prompt="a", output_format="gif"), True, "output_format", id="gif"),  # type: ignore[arg-type]
        pytest.param(
            EditParams(prompt="a", safety_tolerance=3), True, "safety_tolerance", id="s3-edit"
        ),
        pytest.param(
            EditParams(prompt="a", safety_tolerance=7), False, "safety_tolerance", id="s7-gen"
        ),
        pytest.param(
            EditParams(prompt="a", safety_tolerance=-1), False, "safety_tolerance", id="neg"
        ),
    ],
)
def test_validated_names_the_bad_field_when_a_value_is_refused(params, editing, field):
    with pytest.raises(ParamsError) as caught:
        params.validated(editing=editing)
    assert field in caught.value.field_errors
    assert str(caught.value).endswith(".")


def test_safety_tolerance_six_is_accepted_when_generating_but_not_when_editing():
    EditParams(prompt="a", safety_tolerance=6).validated(editing=False)
    with pytest.raises(ParamsError, match="0 to 2 when editing"):
        EditParams(prompt="a", safety_tolerance=6).validated(editing=True)


def test_format_cents_shows_dollars():
    assert format_cents(5) == "$0.05"
    assert format_cents(125) == "$1.25"


def test_an_instruction_over_the_limit_is_told_how_much_to_cut():
    """It said only "longer than 4000 characters": how much to cut was left to count."""
    with pytest.raises(ParamsError) as caught:
        EditParams(prompt="x" * 4012).validated(editing=True)
    assert str(caught.value) == (
        "The instruction is 4,012 characters, longer than the 4,000 allowed: cut 12 characters."
    )
    with pytest.raises(ParamsError, match=r"cut 1 character\.$"):
        EditParams(prompt="x" * 4001).validated(editing=True)
