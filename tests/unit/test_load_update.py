"""The load event's answer less what the page's config already shows (`changed_from_config`)."""

from __future__ import annotations

import gradio as gr

from studio.ui.handlers import changed_from_config


def test_an_update_the_config_already_shows_is_skipped():
    with gr.Blocks():
        button = gr.Button("↻ Try again", visible=False)
        timer = gr.Timer(2.0, active=True)
    assert changed_from_config(button, gr.Button(visible=False)) == gr.skip()
    assert changed_from_config(timer, gr.Timer(value=2.0, active=True)) == gr.skip()


def test_only_the_props_that_change_are_sent():
    with gr.Blocks():
        image = gr.Image(visible=True)
        html = gr.HTML("", can_undo=False, can_redo=False)
    update = changed_from_config(image, gr.Image(value="step.png", visible=True))
    assert isinstance(update, gr.Image)
    assert update.constructor_args == {"value": "step.png"}
    update = changed_from_config(html, gr.HTML(can_undo=True, can_redo=False))
    assert isinstance(update, gr.HTML)
    assert update.constructor_args == {"can_undo": True}


def test_plain_values_and_skips_are_sent_as_they_are():
    with gr.Blocks():
        status = gr.HTML("")
        step = gr.State(None)
    assert changed_from_config(status, "") == ""
    assert changed_from_config(step, None) is None
    assert changed_from_config(status, gr.skip()) == gr.skip()
