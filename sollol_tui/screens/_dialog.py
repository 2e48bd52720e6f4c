"""Shared look of the dialogs: a centred box with a title, a body and a row of buttons."""

from __future__ import annotations

DIALOG_CSS = """
{name} {{
    align: center middle;
    background: $background 60%;
}}
{name} > .dialog {{
    width: 76;
    max-width: 100%;
    height: auto;
    max-height: 100%;
    border: thick $primary 80%;
    background: $surface;
    padding: 0 1;
}}
{name} .dialog-title {{ text-style: bold; color: $primary; width: 1fr; margin-bottom: 1; }}
{name} .dialog-error {{ color: $error; height: auto; }}
{name} .dialog-buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} .dialog-buttons Button {{ margin-left: 1; }}
"""


def dialog_css(name: str) -> str:
    return DIALOG_CSS.format(name=name)
