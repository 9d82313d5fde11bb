"""What a page's first answer carries drawn (studio/ui/predraw.py), without a server."""

from __future__ import annotations

from dataclasses import dataclass

from studio.ui import predraw, tree


@dataclass
class _Block:
    _id: int


def test_only_what_may_be_drawn_goes_and_an_update_gives_its_props():
    outputs = [_Block(1), _Block(2), _Block(3), _Block(4)]
    data = [
        "session-id",  # a state's value: not drawable
        {"__type__": "update", "value": "<nav></nav>", "visible": True},
        {"__type__": "update"},  # nothing changed: nothing sent
        {"__type__": "update", "props": {"__type__": "update", "cost": "$0.15"}},
    ]
    assert predraw.drawn_props(outputs, data, {2, 3, 4}) == {
        "2": {"value": "<nav></nav>", "visible": True},
        "4": {"props": {"cost": "$0.15"}},  # a block's own props: to be merged into its own
    }


def test_the_page_config_carries_the_drawn_page_only_while_a_page_is_answered():
    config = predraw.PageConfig({"components": [], "root": ""})
    assert predraw.CONFIG_KEY not in dict(config.items())
    token = predraw._DRAWN.set({"session": "s", "step": "t", "props": {}})
    try:
        assert dict(config.items())[predraw.CONFIG_KEY]["session"] == "s"
        assert predraw.CONFIG_KEY not in config  # (nothing else that reads it sees it)
    finally:
        predraw._DRAWN.reset(token)
    assert predraw.CONFIG_KEY not in dict(config.items())


def test_a_drawn_history_is_marked_until_its_load_event_draws_it():
    marked = tree.drawn_before_load(tree.empty_html())
    assert marked.startswith('<nav class="tree" data-predrawn aria-label')
    assert marked.count("data-predrawn") == 1
