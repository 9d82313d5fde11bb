"""The page's short texts: a little Markdown made HTML, where nothing in the text becomes markup."""

import gradio as gr

from studio.ui import present, prose


def test_markup_in_a_text_is_shown_as_the_characters_it_is():
    html = prose.to_html('⚠ <img src=x onerror=alert(1)> "quoted" & done')
    assert "<img" not in html
    assert html == "<p>⚠ &lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot; &amp; done</p>"


def test_the_studio_s_own_markdown_becomes_html_and_user_text_stays_text():
    text = f"**Simulator** *key* `RUNAPI_API_KEY` {present.as_text('*not emphasis* <b>')}"
    html = prose.to_html(text)
    assert html.startswith("<p><strong>Simulator</strong> <em>key</em> <code>RUNAPI_API_KEY</code>")
    assert "<em>not" not in html
    assert "<b>" not in html
    assert "&#42;not emphasis&#42;" in html  # a reference: shown as "*"


def test_headings_lists_and_paragraphs():
    html = prose.to_html("## Title\n- one\n- two\nafter")
    assert html == "<h2>Title</h2><ul><li>one</li><li>two</li></ul><p>after</p>"


def test_a_prose_component_keeps_escaping_after_gradio_copies_it():
    """A prop update makes Gradio rebuild the component from its constructor arguments."""
    with gr.Blocks():
        status = prose.component("", elem_id="status")
    copy = status.__class__(**{**status.constructor_args, "render": False})
    assert copy.postprocess("<script>x</script>") == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert gr.HTML("").postprocess("<b>ours</b>") == "<b>ours</b>"  # plain HTML untouched
