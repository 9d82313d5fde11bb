"""Reading an export is reading untrusted input: every value checked, unfinished steps disarmed."""

from __future__ import annotations

import hashlib
import io
import struct
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from studio.bundle import (
    MAX_BUNDLE_BYTES,
    UNFINISHED_WHEN_EXPORTED,
    BundleError,
    read_bundle,
    write_bundle,
)
from studio.history import ImageRef, Session, StepState, new_id
from studio.params import EditParams
from tests.support.engines import make_image
from tests.support.sessions import with_step
from tests.support.zips import bomb, build_zip, rewrite_export

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _export() -> bytes:
    """A real export: an original, one finished edit and one failed edit beside it."""
    origin_png, result_png = make_image(), make_image(colour=(10, 200, 30))
    images = {hashlib.sha256(d).hexdigest(): d for d in (origin_png, result_png)}
    origin = ImageRef(
        sha256=hashlib.sha256(origin_png).hexdigest(), format="png", width=320, height=240
    )
    result = ImageRef(
        sha256=hashlib.sha256(result_png).hexdigest(), format="png", width=320, height=240
    )
    start = NOW - timedelta(hours=1)
    session = Session.start(new_id(), "Trip", origin, start)
    session = session.add_step(new_id(), EditParams(prompt="make it blue"), start)
    done = session.current.start("task-1", start).complete(
        result, start + timedelta(seconds=6), cost_cents=5
    )
    session = with_step(session, done).make_current(session.origin.step_id)
    session = session.add_step(new_id(), EditParams(prompt="add snow", model="max"), start)
    failed = session.current.fail("moderation", start + timedelta(seconds=3), cost_cents=0)
    session = with_step(session, failed)
    return write_bundle(session, images.__getitem__)


EXPORT = _export()


def _changed(change) -> bytes:
    return rewrite_export(EXPORT, change)


def _steps(document):
    return document["steps"]


def test_a_real_export_reads_back_with_new_ids():
    bundle = read_bundle(EXPORT, now=NOW)
    prompts = [s.params.prompt for s in bundle.session.steps.values() if s.params]
    assert prompts == ["make it blue", "add snow"]
    assert bundle.session.name == "Trip"
    assert len(bundle.images) == 2


@pytest.mark.parametrize("state", ["queued", "running"])
def test_an_unfinished_step_arrives_failed_with_no_task_to_follow(state):
    def add_unfinished(document):
        edit = _steps(document)[1]
        _steps(document).append(
            {
                **edit,
                "step_id": new_id(),
                "state": state,
                "task_id": "task-someone-elses",
                "image": None,
                "result": None,
                "cost_cents": None,
                "completed_at": None,
                "error": None,
            }
        )

    bundle = read_bundle(_changed(add_unfinished), now=NOW)
    [step] = [s for s in bundle.session.steps.values() if s.error == UNFINISHED_WHEN_EXPORTED]
    assert step.state is StepState.FAILED
    assert step.task_id is None
    assert step.cost_cents == 0
    assert not any(
        s.state in (StepState.QUEUED, StepState.RUNNING) for s in bundle.session.steps.values()
    )


def _set(index: int, key: str, value):
    def change(document):
        _steps(document)[index][key] = value

    return change


def _set_param(key: str, value):
    def change(document):
        _steps(document)[1]["params"][key] = value

    return change


def _set_result(key: str, value):
    def change(document):
        _steps(document)[1]["result"][key] = value

    return change


def _set_document(key: str, value):
    def change(document):
        document[key] = value

    return change


def _duplicate_step(document):
    _steps(document).append(dict(_steps(document)[2]))


def _second_root(document):
    _steps(document).append({**_steps(document)[0], "step_id": new_id()})


def _cycle(document):
    a, b = new_id(), new_id()
    edit = _steps(document)[2]
    _steps(document).extend(
        [{**edit, "step_id": a, "parent_id": b}, {**edit, "step_id": b, "parent_id": a}]
    )


def _child_of_failed(document):
    failed = _steps(document)[2]
    _steps(document).append({**failed, "step_id": new_id(), "parent_id": failed["step_id"]})


LATER = (NOW + timedelta(days=30)).isoformat()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(_set_param("model", "ultra"), "settings are not ones", id="model"),
        pytest.param(_set_param("aspect_ratio", "2:1"), "settings are not ones", id="ratio"),
        pytest.param(_set_param("output_format", "gif"), "settings are not ones", id="format"),
        pytest.param(
            _set_param("safety_tolerance", 5), "safety tolerance must be", id="safety-edit"
        ),
        pytest.param(
            _set_param("safety_tolerance", True), "settings are not ones", id="safety-bool"
        ),
        pytest.param(_set_param("enable_translation", "yes"), "settings are not ones", id="flag"),
        pytest.param(_set_param("prompt", "   "), "instruction is empty", id="prompt-empty"),
        pytest.param(_set_param("prompt", "x" * 4001), "longer than the 4,000", id="prompt-long"),
        pytest.param(_set_param("prompt", 7), "settings are not ones", id="prompt-number"),
        pytest.param(_set(1, "params", None), "settings are missing", id="no-params"),
        pytest.param(_set(1, "cost_cents", "abc"), "cost", id="cost-text"),
        pytest.param(_set(1, "cost_cents", -5), "cost", id="cost-negative"),
        pytest.param(_set(1, "cost_cents", 10**12), "cost", id="cost-absurd"),
        pytest.param(_set(1, "cost_cents", 2.5), "cost", id="cost-fraction"),
        pytest.param(_set(1, "cost_cents", True), "cost", id="cost-bool"),
        pytest.param(_set(1, "elapsed_s", -1), "time is not", id="elapsed-negative"),
        pytest.param(_set(1, "elapsed_s", 1e12), "time is not", id="elapsed-absurd"),
        pytest.param(_set(1, "created_at", "yesterday"), "time zone", id="date-words"),
        pytest.param(_set(1, "created_at", "2026-05-01T10:00:00"), "time zone", id="date-naive"),
        pytest.param(_set(1, "created_at", "1999-01-01T00:00:00+00:00"), "before 2024", id="old"),
        pytest.param(_set(1, "completed_at", LATER), "in the future", id="future"),
        pytest.param(_set(1, "created_at", None), "no creation time", id="date-missing"),
        pytest.param(_set(1, "task_id", "a b<c>"), "task id", id="task-id"),
        pytest.param(_set(2, "error", "x" * 3000), "error text", id="error-long"),
        pytest.param(_set(1, "state", "paused"), "state is not one", id="state"),
        pytest.param(_set(1, "kind", "origin"), "does not follow", id="second-origin-kind"),
        pytest.param(_set(1, "kind", "generate"), "without a source image", id="kind-mismatch"),
        pytest.param(_set(1, "image", None), "image does not match its state", id="done-no-image"),
        pytest.param(
            _set(2, "image", "images/000-original.png"), "does not match", id="failed-image"
        ),
        pytest.param(
            _set(1, "image", "images/elsewhere.png"), "does not contain", id="image-absent"
        ),
        pytest.param(_set_result("width", 0), "not a real size", id="width-zero"),
        pytest.param(_set_result("height", "240"), "not a real size", id="height-text"),
        pytest.param(_set_result("format", "PNG!"), "format", id="image-format"),
        pytest.param(_set(1, "step_id", "1"), "not a step id", id="id-short"),
        pytest.param(_set(1, "step_id", "../../etc"), "not a step id", id="id-path"),
        pytest.param(_set(2, "parent_id", new_id()), "one tree", id="parent-unknown"),
        pytest.param(_duplicate_step, "same step twice", id="duplicate"),
        pytest.param(_second_root, "one tree", id="two-roots"),
        pytest.param(_cycle, "one tree", id="cycle"),
        pytest.param(_child_of_failed, "does not follow a finished step", id="child-of-failed"),
        pytest.param(_set_document("name", "n" * 201), "longer than 200", id="name-long"),
        pytest.param(_set_document("name", 5), "not text", id="name-number"),
        pytest.param(_set_document("current_step_id", new_id()), "current step", id="current"),
        pytest.param(_set_document("version", 2), "newer Kontext Studio", id="version"),
        pytest.param(_set_document("steps", []), "no steps", id="no-steps"),
        pytest.param(_set(0, "params", {"prompt": "x"}), "settings of an edit", id="origin-params"),
    ],
)
def test_a_value_no_edit_could_have_is_refused_with_one_sentence(change, words):
    with pytest.raises(BundleError, match=words) as refused:
        read_bundle(_changed(change), now=NOW)
    sentence = str(refused.value)
    assert sentence.endswith(".")
    assert "\n" not in sentence
    assert len(sentence) < 200


def test_the_session_name_is_tidied_and_a_missing_one_gets_a_default():
    tidy = read_bundle(_changed(_set_document("name", "  A\n\ttrip  ")), now=NOW)
    assert tidy.session.name == "A trip"
    unnamed = read_bundle(_changed(_set_document("name", None)), now=NOW)
    assert unnamed.session.name == "Imported session"


def test_a_zip_larger_than_the_cap_is_refused_before_it_is_opened():
    with pytest.raises(BundleError, match=f"larger than {MAX_BUNDLE_BYTES // 2**20} MB"):
        read_bundle(b"PK" + bytes(MAX_BUNDLE_BYTES), now=NOW)


def test_an_entry_whose_header_declares_too_much_is_refused_before_it_is_inflated():
    # 4 MiB of data whose headers claim 40 MiB: refused by the header, never inflated.
    data = bomb("session.json", 4, declared_size=40 << 20)
    with pytest.raises(BundleError, match=r"session\.json is larger than 8 MB"):
        read_bundle(data, now=NOW)


def test_an_entry_whose_header_declares_too_little_is_refused_as_damaged():
    data = bomb("session.json", 8, declared_size=1000)
    with pytest.raises(BundleError, match="damaged"):
        read_bundle(data, now=NOW)


@pytest.mark.parametrize(
    ("files", "words"),
    [
        pytest.param({"hello.txt": b"hi"}, "not a Kontext Studio", id="no-session-json"),
        pytest.param({"session.json": b"[" * 100_000}, "damaged|not a Kontext", id="deep-json"),
        pytest.param({"session.json": b"\xff\xfe"}, "damaged|not a Kontext", id="not-utf8"),
        pytest.param({"session.json": b"{}"}, "not a Kontext Studio", id="empty-document"),
    ],
)
def test_a_zip_that_is_not_an_export_is_refused(files, words):
    with pytest.raises(BundleError, match=words):
        read_bundle(build_zip(files), now=NOW)


def test_too_many_entries_are_refused_before_any_is_read():
    files = {f"images/{i}.png": b"" for i in range(5100)}
    files["session.json"] = b"{}"
    with pytest.raises(BundleError, match="more files"):
        read_bundle(build_zip(files), now=NOW)


def _listing(entries: int, *, zip64: bool = False, extra: int = 0, offset: int = 0) -> bytes:
    """A ZIP whose central directory lists `entries` empty entries, each with `extra` bytes of
    empty extra fields, and nothing else."""
    fields = bytes(4) * (extra // 4)
    central = b"".join(
        struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 8, len(fields), 0, 0, 0, 0, 0
        )
        + b"%08x" % n
        + fields
        for n in range(entries)
    )
    end = b""
    if zip64:  # (the record that `zipfile` takes the directory's size from, and its locator)
        fields = (b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, len(central), 0)
        end = struct.pack("<4sQ2H2L4Q", *fields)
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, len(central), 1)
    count = min(entries, 0xFFFF)
    size = 0xFFFFFFFF if zip64 else len(central)
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, size, offset, 0)
    return central + end


SIGNATURE = int.from_bytes(b"PK\x05\x06", "little")


@pytest.mark.parametrize(
    ("zip64", "offset"),
    [(False, 0), (True, 0), (False, SIGNATURE)],
    ids=["zip", "zip64", "offset-spelling-the-signature"],
)
def test_a_listing_of_far_more_entries_than_an_export_has_is_refused_before_it_is_read(
    zip64, offset
):
    """`zipfile` makes an object of each entry a ZIP's directory lists, in Python, before the
    entries can be counted: a 48 MB directory of a million empty entries took 5.3 s and 459 MB
    a try (review 45 F1). The directory's size is read from its end record first, wherever
    `zipfile` may find it: an end record whose offset spells the signature hid it from the
    first bound (review 46 F1)."""
    with pytest.raises(BundleError, match="more files"):
        read_bundle(_listing(2000, zip64=zip64, offset=offset), now=NOW)  # (counted: as before)
    data = _listing(100_000, zip64=zip64, offset=offset)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match="more files"):
            read_bundle(data, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak / 2**20:.0f} MB to refuse a listing of {len(data) >> 20} MB"


def test_a_listing_of_few_entries_with_long_extra_fields_is_refused_before_it_is_read():
    """`zipfile` walks an entry's extra fields by slicing the rest each time: 770 entries of
    64 KB of empty fields each, under the count, took 12.7 s a try (review 45 F1)."""
    with pytest.raises(BundleError, match="more files"):
        read_bundle(_listing(20, extra=65_532), now=NOW)


def test_not_a_zip_at_all():
    with pytest.raises(BundleError, match=r"damaged|not a Kontext"):
        read_bundle(b"not a zip", now=NOW)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("session.json", "{}")
    truncated = buffer.getvalue()[:-30]
    with pytest.raises(BundleError):
        read_bundle(truncated, now=NOW)


def test_images_of_instructions_in_any_script_are_named_after_them_and_read_back():
    """An instruction in Japanese named every image of its steps "step" in the ZIP."""
    origin_png, result_png = make_image(), make_image(colour=(10, 200, 30))
    images = {hashlib.sha256(d).hexdigest(): d for d in (origin_png, result_png)}
    origin, result = (ImageRef(sha256=sha, format="png", width=320, height=240) for sha in images)
    session = Session.start(new_id(), "旅", origin, NOW)
    session = session.add_step(new_id(), EditParams(prompt="空を青くして"), NOW)
    done = session.current.start("task-1", NOW).complete(result, NOW, cost_cents=5)
    data = write_bundle(with_step(session, done), images.__getitem__)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "images/001-空を青くして.png" in names
    bundle = read_bundle(data, now=NOW)
    assert [s.params.prompt for s in bundle.session.steps.values() if s.params] == ["空を青くして"]
