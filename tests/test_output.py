"""How listings look: aligned columns that fit the terminal, whatever the mail put in them."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from deskctl.output import Column, columns

SPECS = [
    Column("#", right=True),
    Column("title", share=2),
    Column("customer", share=1),
    Column("msgs", right=True),
]


def layout(rows: list[list[str]], width: int) -> list[str]:
    return columns(SPECS, [[Text(c) for c in row] for row in rows], width).plain.split("\n")


def test_columns_line_up_under_their_headers() -> None:
    lines = layout(
        [["7", "Printer on fire", "ada@example.test", "3"], ["1042", "VPN", "", "12"]], 80
    )
    assert lines == [
        "   #  title            customer          msgs",
        "   7  Printer on fire  ada@example.test     3",
        "1042  VPN                                  12",
    ]


def test_long_text_is_cut_with_an_ellipsis_so_every_line_fits() -> None:
    title = "A very long subject line that a customer wrote in one breath " * 3
    lines = layout([["1", title, "somebody.with.a.long.name@example.test", "1"]], 60)
    assert all(cell_len(line) <= 60 for line in lines)
    body = lines[1]
    assert "…" in body and body.startswith("1  A very long subject")
    # The title has twice the customer's share of the room the others leave.
    title_cells = cell_len(lines[0].split("customer")[0]) - cell_len("1  ")
    assert title_cells > cell_len(body.split("…")[1]) + 5


def test_a_narrow_column_leaves_its_unused_share_to_the_others() -> None:
    lines = layout([["1", "x" * 100, "a@b.c", "1"]], 80)
    assert "a@b.c" in lines[1]  # the customer needs 8 cells and gets them
    assert cell_len(lines[1]) == 80  # the title takes the rest


def test_wide_characters_count_as_two_cells() -> None:
    lines = layout([["1", "請求書について", "李 <li@example.cn>", "2"]], 80)
    assert cell_len(lines[1]) == cell_len(lines[0])
