"""The studio as an MCP server: an agent lists the tools and edits an image."""

from __future__ import annotations

import base64

import pytest

from tests.browser.conftest import running_studio
from tests.support.engines import make_image

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def mcp_studio(sim, clean_env):
    with running_studio(sim, clean_env, mcp=True) as running:
        yield running


async def test_an_mcp_client_lists_the_tools_and_edits_an_image(mcp_studio, sim):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        streamable_http_client(mcp_studio.url + "gradio_api/mcp/") as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {
            "edit_image",
            "continue_session",
            "compare_models",
            "keep_result",
            "export_session",
        }
        assert "FLUX.1 Kontext" in tools["edit_image"].description
        assert "instruction" in tools["edit_image"].inputSchema["properties"]

        image = "data:image/png;base64," + base64.b64encode(make_image()).decode()
        result = await session.call_tool(
            "edit_image", {"image": image, "instruction": "make it blue", "model": "pro"}
        )
    assert not result.isError
    assert "completed" in str(result.content)
    (task,) = sim.tasks.values()
    assert task.body["prompt"] == "make it blue"
