"""Gradio's session record made lazily (studio/ui/lean.py) says the same as Gradio's own."""

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


def test_a_value_set_in_a_lean_session_shows_in_its_components():
    demo = _page()
    ids = [k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox)]
    ours, theirs = lean.LeanSessionState(demo), lean._GradioSessionState(demo)
    for session in (ours, theirs):
        session._update_value_in_config(ids[0], "changed")
    assert list(ours.components) == list(theirs.components)


def test_values_set_by_events_build_nothing_and_show_in_order_with_replaced_blocks():
    demo = _page()
    first, second = [k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox)][:2]
    ours, theirs = lean.LeanSessionState(demo), lean._GradioSessionState(demo)
    for session in (ours, theirs):
        session._update_value_in_config(first, "set by an event")
        session._update_value_in_config(second, "an output")
        session[second] = gr.Textbox("replaced by an update")  # a later update wins
        session._update_value_in_config(first, "set again")
    assert set(ours.config_values) == {second}  # only the replaced block's config was made
    assert list(ours.components) == list(theirs.components)


def test_install_makes_every_new_session_lean():
    lean.install()
    lean.install()
    assert gradio.state_holder.SessionState is lean.LeanSessionState
    assert gradio.route_utils.SessionState is lean.LeanSessionState
