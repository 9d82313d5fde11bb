"""Gradio's session record (studio/ui/lean.py): what the page needs, no copy of event values."""

from __future__ import annotations

import gradio as gr
import gradio.route_utils
import gradio.state_holder

from studio.ui import lean


def _page() -> gr.Blocks:
    with gr.Blocks() as demo:
        with gr.Row():
            text = gr.Textbox("hello", label="Instruction")
            image = gr.Image(type="filepath")
        state = gr.State(3)
        out = gr.Textbox()
        gr.Button("Go").click(lambda t, s: f"{t} {s}", [text, state], out)
        image.change(lambda _: None, image, None)
    return demo


def test_a_lean_session_lists_the_same_components_as_gradio_s_own():
    demo = _page()
    original = lean._GradioSessionState(demo)
    assert lean.LeanSessionState(demo).config_values == {}  # nothing built up front
    assert list(lean.LeanSessionState(demo).components) == list(original.components)


def test_values_sent_by_events_are_not_kept_but_states_and_updates_are():
    demo = _page()
    text, out = [k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox)][:2]
    state = next(k for k, b in demo.blocks.items() if isinstance(b, gr.State))
    big = "x" * 1_000_000
    ours, theirs = lean.LeanSessionState(demo), lean._GradioSessionState(demo)
    for session in (ours, theirs):
        session._update_value_in_config(text, big)  # what preprocess does with an input
        session[out] = gr.Textbox("replaced by an update", render=False)
        session[state] = "the tab's own"
    assert any(big in str(c) for c in theirs.components)  # Gradio keeps the text
    assert not any(big in str(c) for c in ours.components)
    assert ours.config_values == {}
    assert ours[state] == "the tab's own"
    assert ours[out].value == "replaced by an update"


def test_install_makes_every_new_session_lean():
    lean.install()
    lean.install()
    assert gradio.state_holder.SessionState is lean.LeanSessionState
    assert gradio.route_utils.SessionState is lean.LeanSessionState


def test_answers_make_room_with_idle_tabs_and_take_their_empty_records_along():
    """Gradio's table of unread answers dropped its oldest tab even while that tab's event ran
    (the answer lost), and left an empty record of events behind for every tab whose stream
    ended, for good (review round 7, F4 and F6)."""
    import asyncio

    from gradio.queueing import Queue

    queue = Queue(
        live_updates=False, concurrency_count=1, update_intervals=1, max_size=None, blocks=None
    )
    queue.pending_messages_per_session.max_size = 10
    lean.hold_answers(queue)
    answers, events = queue.pending_messages_per_session, queue.pending_event_ids_session
    answers["busy"] = asyncio.Queue()
    events["busy"] = {"event-1"}
    queue.event_ids_to_events["event-1"] = object()  # waiting or running
    answers["unread"] = asyncio.Queue()
    events["unread"] = {"event-2"}  # done, its answer never read: no claim to a place
    for n in range(50):
        answers[f"tab{n}"] = asyncio.Queue()
        events[f"tab{n}"] = set()  # its stream ended: Gradio keeps the empty record
    assert len(answers) == 10
    assert "busy" in answers  # its event runs: its answer has a place
    assert "unread" not in answers
    assert set(events) == set(answers)  # the tabs that went took their records along


def test_tabs_whose_events_wait_keep_their_answers_and_making_room_looks_at_a_few():
    """API calls sent faster than they ran, each its own tab: making room looked at every tab
    for an idle one, and with none dropped a busy one, which the next estimate Gradio sent its
    waiting event put back; the studio spent minutes at 100% of a core (2026-12-05)."""
    import asyncio

    from gradio.queueing import Queue

    class Looked(dict):
        asked = 0

        def get(self, key, default=None):
            Looked.asked += 1
            return super().get(key, default)

    queue = Queue(
        live_updates=False, concurrency_count=1, update_intervals=1, max_size=None, blocks=None
    )
    queue.pending_messages_per_session.max_size = 10
    queue.pending_event_ids_session = Looked()
    lean.hold_answers(queue)
    answers, events = queue.pending_messages_per_session, queue.pending_event_ids_session
    for n in range(2_000):
        events[f"tab{n}"] = {f"event-{n}"}
        queue.event_ids_to_events[f"event-{n}"] = object()  # waiting
        answers[f"tab{n}"] = asyncio.Queue()
    assert len(answers) == 2_000  # none dropped while its event waits
    assert Looked.asked <= 2_000 * lean.ROOM_LOOKED_AT
    queue.event_ids_to_events.clear()  # all done: the next tabs make room again
    for n in range(40):
        answers[f"later{n}"] = asyncio.Queue()
    assert len(answers) < 2_000


def test_a_tab_that_never_reads_keeps_one_estimate_per_waiting_event():
    """Gradio sends every waiting event a new estimate of its place each time any event starts;
    a tab that never read its answers kept them all, hundreds a tab under a flood (about 65 KB
    of the studio's memory each, review 16 M1). The newest estimate is all a reader needs."""
    import asyncio

    import gradio.queueing
    from gradio.queueing import Event, Queue
    from gradio.server_messages import EstimationMessage, ProcessStartsMessage

    demo = _page()
    fn = next(iter(demo.fns.values()))
    queue = Queue(
        live_updates=True, concurrency_count=1, update_intervals=1, max_size=None, blocks=demo
    )
    lean.hold_answers(queue)
    queue.create_event_queue_for_fn(fn)
    waiting = queue.event_queue_per_concurrency_id[fn.concurrency_id].queue

    async def flood() -> list[object]:
        first, second = Event("quiet", fn, None, None), Event("quiet", fn, None, None)  # type: ignore[arg-type]
        for event in (Event("someone", fn, None, None), first, second):  # type: ignore[arg-type]
            # (as Gradio's `Queue.push` makes a tab's unread answers)
            queue.pending_messages_per_session.setdefault(
                event.session_hash, gradio.queueing.AsyncQueue()
            )
            waiting.append(event)
        for _ in range(300):  # each time another event starts
            queue.broadcast_estimations(fn.concurrency_id)
        waiting.remove(first)
        queue.send_message(first, ProcessStartsMessage())
        queue.broadcast_estimations(fn.concurrency_id)
        unread = queue.pending_messages_per_session["quiet"]
        return [unread.get_nowait() for _ in range(unread.qsize())]

    unread = asyncio.run(flood())
    # Each event's newest estimate (the second moved up when the first began), then the start.
    assert [type(m) for m in unread] == [EstimationMessage, EstimationMessage, ProcessStartsMessage]
    assert [m.rank for m in unread[:2]] == [1, 1]  # type: ignore[attr-defined]
    assert unread[1].event_id != unread[0].event_id == unread[2].event_id  # type: ignore[attr-defined]
