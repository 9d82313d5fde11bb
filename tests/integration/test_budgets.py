"""A hosted studio's budgets hold across a restart, and every step says whose key pays for it:
one paid with a visitor's own key never runs on the server's. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from studio.bundle import BundleError
from studio.config import Secret
from studio.engine import KEYS_REFUSED_PER_ADDRESS, WAITS_FOR_EARLIER, WAITS_FOR_KEY, Engine
from studio.history import Step, StepState
from studio.limits import LimitError, Limits, LimitSettings
from studio.params import EditParams, RegionRequest
from studio.runapi import AuthenticationError
from studio.simulator.tasks import LatencyProfile
from studio.visitor import Visitor
from tests.support.engines import make_engine, make_image

pytestmark = pytest.mark.anyio
A, B, C = (Visitor(f"browser:{n}", address="198.51.100.1") for n in "abc")
# Slow enough to restart the studio while a task runs.
SLOW = LatencyProfile(0.6, 0.6, 0.6, 0.6)
BLUE = EditParams(prompt="blue")


def _engine(sim, home) -> Engine:  # type: ignore[no-untyped-def]
    caps = LimitSettings(visitor_budget_cents=10, total_budget_cents=15, max_running=5)
    return make_engine(home, sim.base_url, sim.api_key, limits=Limits(caps))


async def _session(engine: Engine, who: Visitor) -> str:
    image = await engine.read_image(make_image())
    return (await engine.start_session(image, name="mine", visitor=who)).session_id


async def _created(engine: Engine, session_id: str, step_id: str) -> None:
    """Until the step's task exists at RunAPI (its id is stored)."""
    for _ in range(200):
        if (await engine.load_session(session_id)).steps[step_id].task_id:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the task was never created")


async def _left_at_a_restart(  # type: ignore[no-untyped-def]
    sim, home, who: Visitor, params: EditParams
) -> tuple[Engine, str, Step]:
    """A step of `who`'s (in a session of A's) created at RunAPI, then the studio restarted
    under it, not yet resumed: the new engine, the session and the step as it was made."""
    sim.latency = SLOW
    engine = _engine(sim, home)
    mine = await _session(engine, A)
    step = await engine.submit_edit(mine, params, visitor=who)
    await _created(engine, mine, step.step_id)
    await engine.aclose()  # a restart while it runs
    return _engine(sim, home), mine, step


async def test_a_restart_mid_day_forgets_none_of_the_days_spending(sim, clean_env):
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    step = await engine.edit(mine, EditParams(prompt="blue", model="max"), visitor=A)  # 10¢
    assert step.payer == "host"
    await engine.aclose()

    engine = _engine(sim, clean_env)  # the same data directory, the same day
    with pytest.raises(LimitError, match="today's share"):
        await engine.submit_edit(mine, EditParams(prompt="red"), visitor=A)
    theirs = await _session(engine, B)
    await engine.edit(theirs, EditParams(prompt="red"), visitor=B)  # 5¢: 15¢ in all
    with pytest.raises(LimitError, match="budget for today is used up"):
        await engine.submit_edit(await _session(engine, C), EditParams(prompt="x"), visitor=C)
    await engine.aclose()


async def test_a_resumed_step_on_the_servers_key_counts_against_the_budget(sim, clean_env):
    blue = EditParams(prompt="blue", model="max")
    engine, mine, step = await _left_at_a_restart(sim, clean_env, A, blue)
    await engine.resume_unfinished()
    with pytest.raises(LimitError, match="today's share"):
        await engine.submit_edit(mine, EditParams(prompt="red"), visitor=A)
    done = await engine.wait(step.step_id)
    assert done.state is StepState.COMPLETED
    assert sim.tasks_by_key() == {step.step_id: 1}  # resumed, not paid twice
    await engine.aclose()


async def test_a_step_paid_with_a_visitors_key_waits_for_that_key_after_a_restart(sim, clean_env):
    with_key = A.with_key(Secret(sim.api_key))
    engine, mine, step = await _left_at_a_restart(sim, clean_env, with_key, BLUE)
    assert step.payer == "visitor"
    asked = len(sim.requests)
    await engine.resume_unfinished()
    await asyncio.sleep(0.3)
    # Not run on the server's key: nothing was asked of RunAPI, and the step says why it waits.
    assert step.step_id not in engine.running(mine)
    assert len(sim.requests) == asked
    waiting = (await engine.load_session(mine, visitor=A)).steps[step.step_id]
    assert waiting.state is StepState.RUNNING
    assert waiting.error == WAITS_FOR_KEY
    assert step.step_id not in engine.running(mine)  # the visitor came back without their key

    await engine.load_session(mine, visitor=with_key)  # back, with their key
    done = await engine.wait(step.step_id)
    assert done.state is StepState.COMPLETED
    assert done.error is None
    assert sim.tasks_by_key() == {step.step_id: 1}
    # It cost the server's budget nothing: A still has all 10¢ of it.
    await engine.edit(mine, EditParams(prompt="red", model="max"), visitor=A)
    await engine.aclose()


async def test_a_waiting_step_goes_on_only_with_the_key_that_paid_for_it(sim, clean_env):
    """A step paid with a visitor's pasted key ran, after a restart, on whichever key their
    browser pasted next: RunAPI's task belongs to the account that made it (review 21 F2)."""
    sim.accept_key("sk-their-other-account")
    paying = A.with_key(Secret(sim.api_key))
    engine, mine, step = await _left_at_a_restart(sim, clean_env, paying, BLUE)
    await engine.resume_unfinished()
    asked = len(sim.requests)
    other = A.with_key(Secret("sk-their-other-account"))
    waiting = (await engine.load_session(mine, visitor=other)).steps[step.step_id]
    await asyncio.sleep(0.3)
    assert step.step_id not in engine.running(mine)  # not on another account's key
    assert waiting.error == WAITS_FOR_KEY
    assert len(sim.requests) == asked
    await engine.load_session(mine, visitor=paying)
    done = await engine.wait(step.step_id)
    assert done.state is StepState.COMPLETED
    assert sim.tasks_by_key() == {step.step_id: 1}
    reads = [r for r in sim.requests[asked:] if r.method == "GET" and "text_to_image/" in r.path]
    assert reads
    assert {r.headers.get("authorization") for r in reads} == {f"Bearer {sim.api_key}"}
    await engine.aclose()


async def test_a_waiting_step_goes_on_when_its_visitor_lists_their_sessions_with_the_key(
    sim, clean_env
):
    """An API or MCP caller back after a restart may only list their sessions: that is enough."""
    with_key = A.with_key(Secret(sim.api_key))
    engine, mine, step = await _left_at_a_restart(sim, clean_env, with_key, BLUE)
    await engine.resume_unfinished()
    await engine.list_sessions(visitor=A)  # without the key: it keeps waiting
    assert step.step_id not in engine.running(mine)
    await engine.list_sessions(visitor=with_key)
    done = await engine.wait(step.step_id)
    assert done.state is StepState.COMPLETED
    assert sim.tasks_by_key() == {step.step_id: 1}
    await engine.aclose()


async def test_a_waiting_step_cancelled_after_a_restart_is_never_run_when_its_key_comes_back(
    sim, clean_env
):
    """An instruction typed ahead on the visitor's own key, cancelled while it waited for that
    key after a restart, ran and was paid once the key came back; the one queued after it ran
    from the cancelled step (review 36 F2)."""
    with_key = A.with_key(Secret(sim.api_key))
    sim.latency = SLOW
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    sent = await engine.submit_edit(mine, BLUE, visitor=with_key)
    queued = await engine.submit_edit(mine, EditParams(prompt="snow"), visitor=with_key)
    after = await engine.submit_edit(mine, EditParams(prompt="night"), visitor=with_key)
    await _created(engine, mine, sent.step_id)
    await engine.aclose()  # a restart while the first runs and two wait behind it
    engine = _engine(sim, clean_env)
    await engine.resume_unfinished()
    cancelled = await engine.cancel(mine, queued.step_id, visitor=A)  # back without the key
    assert queued.step_id not in cancelled.steps
    assert cancelled.steps[after.step_id].parent_id == sent.step_id
    await engine.list_sessions(visitor=with_key)  # back with it
    done = await engine.wait(after.step_id)
    assert done.state is StepState.COMPLETED
    session = await engine.load_session(mine, visitor=A)
    assert session.steps[sent.step_id].state is StepState.COMPLETED
    assert queued.step_id not in session.steps  # not written back
    assert session.steps[after.step_id].parent_id == sent.step_id
    made = {t.body.get("prompt") for t in sim.tasks.values()}
    assert "snow" not in made  # never created, never paid
    source = session.steps[sent.step_id].result
    assert source is not None
    assert sim.tasks[done.task_id].source_bytes == await engine.image_bytes(source)
    await engine.aclose()


async def test_a_step_on_the_servers_key_behind_one_waiting_for_a_key_holds_no_running_place(
    sim, clean_env
):
    """After a restart, a step the server's key pays for, typed ahead behind one paid with the
    visitor's own key, waited for it without a word and held one of the visitor's running
    places for as long as that one waited (review 36 F3). It waits saying why, holding none,
    and runs on the server's key once the one before it has run on the visitor's."""
    sim.accept_key("sk-visitor-own")
    with_key = A.with_key(Secret("sk-visitor-own"))
    sim.latency = SLOW
    caps = LimitSettings(visitor_budget_cents=10, total_budget_cents=15, max_running=2)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    mine = await _session(engine, A)
    theirs = await engine.submit_edit(mine, BLUE, visitor=with_key)
    behind = await engine.submit_edit(mine, EditParams(prompt="snow"), visitor=A)
    assert behind.payer == "host"
    await _created(engine, mine, theirs.step_id)
    await engine.aclose()  # a restart while the first runs and the second waits behind it
    caps = LimitSettings(visitor_budget_cents=10, total_budget_cents=15, max_running=1)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    await engine.resume_unfinished()
    waiting = (await engine.load_session(mine, visitor=A)).steps[behind.step_id]
    assert waiting.error == WAITS_FOR_EARLIER
    assert behind.step_id not in engine.running(mine)
    # Their one running place is free: another edit of theirs runs meanwhile.
    other = await _session(engine, A)
    meanwhile = await engine.submit_edit(other, EditParams(prompt="red"), visitor=A)
    assert (await engine.wait(meanwhile.step_id)).state is StepState.COMPLETED
    asked = len(sim.requests)
    await engine.list_sessions(visitor=with_key)  # back with the key
    assert (await engine.wait(theirs.step_id)).state is StepState.COMPLETED
    done = await engine.wait(behind.step_id)
    assert done.state is StepState.COMPLETED
    assert done.error is None
    sent = [r for r in sim.requests[asked:] if r.method == "POST"]  # (its image, its task)
    assert {r.headers.get("authorization") for r in sent} == {f"Bearer {sim.api_key}"}
    assert [r for r in sent if "text_to_image" in r.path]
    assert sim.tasks_by_key()[behind.step_id] == 1
    await engine.aclose()


async def test_a_step_behind_a_cancelled_waiting_one_runs_on_the_servers_key(sim, clean_env):
    """Once the step it waited behind is cancelled, it runs from the step before that one."""
    sim.accept_key("sk-visitor-own")
    with_key = A.with_key(Secret("sk-visitor-own"))
    sim.latency = SLOW
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    sent = await engine.submit_edit(mine, EditParams(prompt="blue"), visitor=A)
    waits = await engine.submit_edit(mine, EditParams(prompt="snow"), visitor=with_key)
    behind = await engine.submit_edit(mine, EditParams(prompt="night"), visitor=A)
    await _created(engine, mine, sent.step_id)
    await engine.aclose()  # the first runs on the server's key; the second waits for the key
    engine = _engine(sim, clean_env)
    await engine.resume_unfinished()
    assert behind.step_id not in engine.running(mine)
    await engine.cancel(mine, waits.step_id, visitor=A)
    done = await engine.wait(behind.step_id)
    assert done.state is StepState.COMPLETED
    assert done.parent_id == sent.step_id
    await engine.aclose()


def _mask_png(width: int = 320, height: int = 240) -> bytes:
    from PIL import Image

    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (40, 40, 200, 160))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def _stored_files(home) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for p in (home / "images").rglob("*") if p.is_file())


async def test_a_refused_masked_edit_leaves_no_mask_and_a_kept_one_counts_in_the_share(
    sim, clean_env
):
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    await engine.edit(mine, EditParams(prompt="blue", model="max"), visitor=A)  # 10¢: spent
    before, held = _stored_files(clean_env), await engine.held_bytes(visitor=A)
    for _ in range(3):
        with pytest.raises(LimitError):
            await engine.submit_edit(
                mine, EditParams(prompt="red"), visitor=A, region=RegionRequest(mask=_mask_png())
            )
    assert _stored_files(clean_env) == before  # refused: nothing written

    theirs = await _session(engine, B)
    held_b = await engine.held_bytes(visitor=B)
    await engine.edit(
        theirs, EditParams(prompt="red"), visitor=B, region=RegionRequest(mask=_mask_png())
    )
    session = await engine.load_session(theirs, visitor=B)
    (masked,) = [s for s in session.steps.values() if s.region is not None]
    assert masked.region is not None
    mask = masked.region.mask_sha256
    assert mask is not None
    assert await engine.held_bytes(visitor=B) > held_b
    assert held == await engine.held_bytes(visitor=A)
    await engine.aclose()


async def test_a_key_runapi_refuses_stores_nothing_and_locks_no_one_else_out(sim, clean_env):
    engine = _engine(sim, clean_env)
    image = make_image()
    for n in range(5):  # five made-up keys from one address: each asked about, none kept
        who = Visitor(f"key:made-up-{n}", Secret(f"sk-made-up-{n}"), address="198.51.100.9")
        with pytest.raises(AuthenticationError):
            await engine.place_edit(image, visitor=who)
    assert await engine.list_sessions(visitor=who) == []
    assert _stored_files(clean_env) == 0
    # Others' made-up keys lock no one else out (where everyone shares one address, a share
    # link's tunnel, five a minute kept every new API caller out): a good key from the same
    # address goes on, and is checked once. (New visitors an address may become bound how many
    # keys it can try: tests/browser/test_hosted.py.)
    good = Visitor("key:good", Secret(sim.api_key), address="198.51.100.9")
    session, _ = await engine.place_edit(image, visitor=good)
    step = await engine.edit(session.session_id, EditParams(prompt="blue"), visitor=good)
    assert step.state is StepState.COMPLETED
    await engine.aclose()


def _balance_reads(sim) -> int:  # type: ignore[no-untyped-def]
    return sum(r.path.endswith("/balance") for r in sim.requests)


async def test_an_address_has_only_a_few_keys_runapi_refuses_checked(sim, clean_env):
    """Every key new to the studio was asked about, four at a time for all callers: one
    address tried about a hundred keys a second through the studio's own address (review 14
    F1). Past ten refused in ten minutes, a new key from that address is refused without
    asking RunAPI, by the API's key header and the page's key box alike; a key RunAPI accepted
    lately, and other addresses, go on as before."""
    engine = _engine(sim, clean_env)
    here, there = "198.51.100.9", "203.0.113.7"
    good = Secret(sim.api_key)
    assert await engine.key_accepted(good, address=here) is True  # (gives its place back)
    for n in range(KEYS_REFUSED_PER_ADDRESS):
        assert await engine.key_accepted(Secret(f"sk-made-up-{n}"), address=here) is False
    asked = _balance_reads(sim)
    with pytest.raises(LimitError, match="Too many RunAPI keys"):
        await engine.key_accepted(Secret("sk-made-up-next"), address=here)
    with pytest.raises(LimitError, match="Too many RunAPI keys"):
        await engine.check_key(Secret("sk-pasted"), visitor=Visitor("browser:c", address=here))
    assert _balance_reads(sim) == asked
    # A key refused a moment ago is answered from memory, as before; one RunAPI accepted
    # lately is checked again from here; another address's keys are asked about.
    assert await engine.key_accepted(Secret("sk-made-up-0"), address=here) is False
    await engine.check_key(good, visitor=Visitor("browser:d", address=here))
    assert await engine.key_accepted(Secret("sk-made-up-x"), address=there) is False
    assert _balance_reads(sim) == asked + 2
    await engine.aclose()


async def test_through_a_share_links_tunnel_refused_keys_lock_no_one_out(sim, clean_env):
    """Where every caller is one address (a share link's tunnel), a cap on that address's
    refused keys would let anyone's made-up keys keep every new caller out (review 6 F7)."""
    caps = LimitSettings(visitor_budget_cents=10, total_budget_cents=15, max_running=5)
    engine = make_engine(
        clean_env, sim.base_url, sim.api_key, limits=Limits(caps), addresses_apart=False
    )
    for n in range(KEYS_REFUSED_PER_ADDRESS + 2):
        assert await engine.key_accepted(Secret(f"sk-made-up-{n}"), address="127.0.0.1") is False
    sim.accept_key("sk-another-account")
    assert await engine.key_accepted(Secret("sk-another-account"), address="127.0.0.1") is True
    await engine.aclose()


async def test_a_queued_edit_cancelled_before_it_is_sent_costs_no_budget(sim, clean_env):
    """A step cancelled before it was sent kept its cents counted against its visitor's share
    and the day's total, in memory and on disk (review 15 L2): budget spent on nothing."""
    sim.latency = SLOW
    engine = _engine(sim, clean_env)  # A's share 10 cents
    sid = await _session(engine, A)
    await engine.submit_edit(sid, EditParams(prompt="blue"), visitor=A)  # 5 cents, runs
    queued = await engine.submit_edit(sid, EditParams(prompt="red"), visitor=A)  # 5, waits
    with pytest.raises(LimitError, match="today's share"):
        await engine.submit_edit(sid, EditParams(prompt="green"), visitor=A)
    await engine.cancel(sid, queued.step_id, visitor=A)
    again = await engine.submit_edit(sid, EditParams(prompt="green"), visitor=A)
    assert (await engine.wait(again.step_id)).state is StepState.COMPLETED
    await engine.aclose()
    # A restart reads the day's spending from the store: the cancelled step is not in it, so
    # the day's total (15 cents) has room for B's 5.
    engine = _engine(sim, clean_env)
    theirs = await _session(engine, B)
    step = await engine.submit_edit(theirs, EditParams(prompt="one more"), visitor=B)
    assert (await engine.wait(step.step_id)).state is StepState.COMPLETED
    await engine.aclose()


async def test_an_edit_past_the_budget_stores_nothing_not_even_its_image(sim, clean_env):
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    await engine.edit(mine, EditParams(prompt="blue", model="max"), visitor=A)  # 10¢: all of A's
    before = await engine.list_sessions(visitor=A)
    photo = make_image(300, 200)
    with pytest.raises(LimitError, match="today's share"):
        await engine.place_edit(photo, name="night", visitor=A)
    assert await engine.list_sessions(visitor=A) == before  # no new session holding the photo
    assert not await engine.owns_image(_sha(photo), visitor=A)
    await engine.aclose()


async def test_an_image_past_the_share_of_the_disk_is_refused_before_it_is_read(sim, clean_env):
    caps = LimitSettings(visitor_budget_cents=10, upload_bytes=10_000)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    # More bytes than the share allows, and not an image at all: the share answers first (the
    # bytes are never decoded), and nothing is stored.
    with pytest.raises(LimitError, match="each visitor may keep"):
        await engine.read_image(b"\x89PNG" + b"\0" * 20_000, visitor=A)
    with pytest.raises(LimitError, match="each visitor may keep"):
        await engine.start_session_from_bytes(b"x" * 20_000, visitor=A)
    assert await engine.list_sessions(visitor=A) == []
    await engine.aclose()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_an_import_that_unpacks_past_the_share_is_refused_before_it_is_inflated(
    sim, clean_env
):
    caps = LimitSettings(visitor_budget_cents=10, upload_bytes=2 * 2**20)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    export = await engine.export_session(await _session(engine, A), visitor=A)
    # The same export with 64 MiB of zeros beside it: a few kilobytes as a ZIP.
    buffer = io.BytesIO(export)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("padding.bin", bytes(64 * 2**20))
    assert len(buffer.getvalue()) < 2**20
    with pytest.raises(BundleError, match="may take only"):
        await engine.import_session(buffer.getvalue(), visitor=A)
    assert len(await engine.list_sessions(visitor=A)) == 1
    await engine.aclose()


async def test_fresh_visitors_from_one_address_share_one_share_of_the_disk(sim, clean_env):
    caps = LimitSettings(
        visitor_budget_cents=10, upload_bytes=300_000, address_upload_bytes=300_000
    )
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    # Three fresh tokens from one address: each a visitor of their own, well within their own
    # share, but together past what the address may keep.
    photos = [_noise(200, 200, seed=n) for n in range(4)]
    assert all(100_000 < len(p) < 150_000 for p in photos)
    await engine.start_session_from_bytes(photos[0], visitor=A)
    await engine.start_session_from_bytes(photos[1], visitor=B)
    with pytest.raises(LimitError, match="network address"):
        await engine.start_session_from_bytes(photos[2], visitor=C)
    elsewhere = Visitor("browser:d", address="203.0.113.9")
    await engine.start_session_from_bytes(photos[3], visitor=elsewhere)  # another address
    await engine.aclose()


async def test_an_address_share_of_the_disk_holds_across_a_restart(sim, clean_env):
    """After a restart an address's share counted none of what its visitors kept until each
    asked again: fresh identities from one address stored a whole share more after every
    restart (review 23 F2)."""
    caps = LimitSettings(
        visitor_budget_cents=10, upload_bytes=300_000, address_upload_bytes=300_000
    )
    photos = [_noise(200, 200, seed=n) for n in range(4)]
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    await engine.resume_unfinished()
    await engine.start_session_from_bytes(photos[0], visitor=A)
    await engine.start_session_from_bytes(photos[1], visitor=B)
    await engine.aclose()
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    await engine.resume_unfinished()
    with pytest.raises(LimitError, match="network address"):
        await engine.start_session_from_bytes(photos[2], visitor=C)
    elsewhere = Visitor("browser:d", address="203.0.113.9")
    await engine.start_session_from_bytes(photos[3], visitor=elsewhere)  # another address
    await engine.aclose()


async def test_exports_of_sessions_sharing_an_image_hold_no_more_than_the_sessions_do(
    sim, clean_env, tmp_path
):
    """The store keeps an image once however many sessions hold it; each export holds it
    whole. Two cookies of one address exporting four sessions of one image each kept six
    times what the store held (review 27 F1). A visitor's exports waiting take at most what
    their sessions hold, and their address's what theirs do (and a little for the ZIP)."""
    from studio.engine import EXPORT_SLACK_BYTES
    from studio.ui.files import export_written, new_export

    caps = LimitSettings(visitor_budget_cents=10, upload_bytes=50 * 2**20)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    photo = _noise(1200, 1000, seed=7)  # about 3.6 MB
    exports = tmp_path / "exports"
    exports.mkdir()
    for who in (A, B):
        for _ in range(4):
            session = await engine.start_session_from_bytes(photo, visitor=who)
            shares = await engine.export_shares(visitor=who)
            target = new_export(
                exports,
                "s",
                owner=who.owner,
                address=who.address,
                shares=shares,
                session=session.session_id,
            )
            assert target is not None
            await engine.export_to(session.session_id, target, visitor=who)
            export_written(target, kept=True, shares=shares)
    kept = sum(f.stat().st_size for f in exports.rglob("*.zip"))
    # Before: 8 exports of the photo; now at most one a visitor, and the slack.
    assert kept <= 2 * (len(photo) + EXPORT_SLACK_BYTES)
    assert kept >= len(photo)
    await engine.aclose()


def _noise(width: int, height: int, *, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


async def test_nothing_new_is_stored_when_the_disk_is_nearly_full(sim, clean_env):
    # A floor above what the disk has free stands for a nearly full disk.
    caps = LimitSettings(visitor_budget_cents=10, disk_floor_bytes=2**62)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    with pytest.raises(LimitError, match="disk is nearly full"):
        await engine.start_session_from_bytes(make_image(), visitor=A)
    assert await engine.list_sessions(visitor=A) == []
    await engine.aclose()


async def test_a_mask_past_the_budget_is_refused_before_it_is_read(sim, clean_env):
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    await engine.edit(mine, EditParams(prompt="blue", model="max"), visitor=A)  # 10¢: all of A's
    # An empty mask would be refused as empty once read: the budget answers first, unread.
    empty = io.BytesIO()
    Image.new("L", (320, 240), 0).save(empty, "PNG")
    with pytest.raises(LimitError, match="today's share"):
        await engine.submit_edit(
            mine, EditParams(prompt="red"), visitor=A, region=RegionRequest(mask=empty.getvalue())
        )
    await engine.aclose()


async def test_a_visitor_keeps_a_bounded_number_of_sessions(sim, clean_env):
    """Every page a visitor opens lists all their sessions: thousands of tiny ones made every
    render slow (theirs, and everyone else's meanwhile). Past the cap, one sentence."""
    caps = LimitSettings(visitor_budget_cents=10, visitor_sessions=2)
    engine = make_engine(clean_env, sim.base_url, sim.api_key, limits=Limits(caps))
    image = await engine.read_image(make_image(), visitor=A)
    first = await engine.start_session(image, visitor=A)
    await engine.start_session(image, visitor=A)
    with pytest.raises(LimitError, match="as many as it keeps for one visitor") as refused:
        await engine.start_session(image, visitor=A)
    assert "delete some" in str(refused.value)
    exported = await engine.export_session(first.session_id, visitor=A)
    with pytest.raises(LimitError, match="as many as it keeps"):
        await engine.import_session(exported, visitor=A)
    assert len(await engine.list_sessions(visitor=A)) == 2
    # Another visitor has their own; once one is deleted, there is room again.
    await engine.start_session(image, visitor=Visitor("browser:b"))
    await engine.delete_session(first.session_id, visitor=A)
    await engine.start_session(image, visitor=A)
    await engine.aclose()


async def test_an_edit_refused_before_runapi_had_a_task_gives_its_price_back(sim, clean_env):
    """Two edits whose creates RunAPI refused (no task: nothing charged) leave the visitor's
    10¢ whole, today and after a restart: a failure kept its price, and with a refused key or
    during an outage every attempt drained the day's budgets (review 54 F5)."""
    engine = _engine(sim, clean_env)
    mine = await _session(engine, A)
    sim.balance_cents = 0  # every create refused
    for _ in range(2):
        failed = await engine.edit(mine, BLUE, visitor=A)
        assert failed.state is StepState.FAILED
        assert failed.task_id is None
    sim.balance_cents = 10_000
    await engine.aclose()
    engine = _engine(sim, clean_env)  # a restart reads the day's spending back
    try:
        for _ in range(2):  # the whole 10¢ again
            done = await engine.edit(mine, BLUE, visitor=A)
            assert done.state is StepState.COMPLETED
        with pytest.raises(LimitError):
            await engine.submit_edit(mine, BLUE, visitor=A)
    finally:
        await engine.aclose()


async def test_an_edit_runapi_failed_gives_its_price_back_and_a_damaged_result_keeps_it(
    sim, clean_env
):
    """RunAPI refunds a task it failed (moderated, say): two such edits leave the visitor's
    10¢ whole. Before, each kept its 5¢ for the day, so a visitor whose prompts were refused
    twice could edit no more. A completed task is charged even when its image comes damaged:
    that step fails saying so, costs its price in the history and keeps it in the budget."""
    engine = _engine(sim, clean_env)
    try:
        mine = await _session(engine, A)
        sim.faults.fail_tasks("Content moderated", times=2)
        for _ in range(2):
            failed = await engine.edit(mine, BLUE, visitor=A)
            assert failed.state is StepState.FAILED
            assert failed.task_id is not None
            assert "moderated" in (failed.error or "")
            assert not failed.cost_cents
        sim.faults.damage_results()
        damaged = await engine.edit(mine, BLUE, visitor=A)
        assert damaged.state is StepState.FAILED
        assert damaged.cost_cents == 5
        sim.faults.reset()
        done = await engine.edit(mine, BLUE, visitor=A)  # the other 5¢ of A's 10
        assert done.state is StepState.COMPLETED
        with pytest.raises(LimitError):
            await engine.submit_edit(mine, BLUE, visitor=A)
    finally:
        await engine.aclose()


async def test_an_edit_left_open_keeps_its_visitors_running_place(sim, clean_env):
    """An edit RunAPI left unanswered past its deadline is still open (asked for again): it
    holds its place among its visitor's edits at once until it ends. It gave the place back
    at the deadline, so each outage freed more (review 56 F3). (An edit typed after it waits
    for it, in its place: it runs one at a time with it.)"""
    caps = LimitSettings(visitor_budget_cents=100, max_running=1)
    engine = make_engine(
        clean_env, sim.base_url, sim.api_key, limits=Limits(caps), task_deadline_s=1.0
    )
    try:
        mine = await _session(engine, A)
        origin = (await engine.load_session(mine, visitor=A)).current.step_id
        sim.faults.server_error(503, times=10_000)
        step = await engine.edit(mine, BLUE, visitor=A)
        assert not step.is_finished
        with pytest.raises(LimitError, match="at most 1 at once"):
            await engine.submit_edit(mine, BLUE, parent_step_id=origin, visitor=A)
        sim.faults.reset()
        for _ in range(200):  # asked for again: it lands, and its place comes free
            with contextlib.suppress(LimitError):
                next_one = await engine.submit_edit(mine, BLUE, parent_step_id=origin, visitor=A)
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the open edit's place never came free")
        landed = (await engine.load_session(mine, visitor=A)).steps[step.step_id]
        assert landed.state is StepState.COMPLETED
        assert (await engine.wait(next_one.step_id)).state is StepState.COMPLETED
    finally:
        await engine.aclose()
