"""rvec.terminal.plain: the one function that makes a name from a file safe to print."""

from __future__ import annotations

import pytest

from rvec.cli.output import shown
from rvec.terminal import plain


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),  # colour: a fake "rvec: error" line
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # window title (OSC … BEL)
        ("a\rb", "a\\rb"),  # carriage return: overwrite the line shown
        ("a\nb", "a\\nb"),  # a second line that looks like rvec's own
        ("\x9b2J", "\\x9b2J"),  # C1 CSI, which some terminals obey alone
        ("del\x7f", "del\\x7f"),
        ("model.layers.0.mlp — α·v ✓", "model.layers.0.mlp — α·v ✓"),  # printable Unicode untouched
    ],
)
def test_plain_escapes_every_control_character_and_nothing_else(raw: str, expected: str) -> None:
    assert plain(raw) == expected


def test_every_c0_c1_and_del_character_is_escaped() -> None:
    controls = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
    escaped = plain(controls)
    assert escaped.isascii() and escaped.isprintable()
    assert escaped.encode().decode("unicode_escape") == controls  # nothing lost, only shown


def test_shown_is_plain_with_rich_markup_neutralised() -> None:
    assert shown("[bold]\x1b[2J") == "\\[bold]\\x1b[2J"
