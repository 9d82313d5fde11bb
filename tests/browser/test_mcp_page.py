"""Gradio's MCP landing page, as a browser opens it: no script from the link runs (a sync
module: Playwright's sync browser beside the async MCP tests broke their event loop)."""

from __future__ import annotations

from tests.browser.conftest import running_studio


def test_the_mcp_page_a_browser_sees_runs_no_script_from_its_link(browser, sim, clean_env):
    """Gradio shows a browser that opens any path ending as its MCP server's a page putting the
    path into a script: a link to the studio ran the link's script on its origin, where it
    could read the visitor's sessions and remembered key (review 34 F3). A local studio has
    no door to refuse the path."""
    script = "%3C%2Fscript%3E%3Cscript%3Edocument.title%3D%27RAN%27%3C%2Fscript%3E"
    with running_studio(sim, clean_env, mcp=True) as studio:
        page = browser.new_page()
        try:
            page.goto(f"{studio.url.rstrip('/')}/gradio_api/mcp/{script}/gradio_api/mcp")
            page.wait_for_load_state("load")
            assert page.title() != "RAN"
            assert "/gradio_api/mcp" in page.content()  # (the page itself is still shown)
        finally:
            page.close()
