"""Dashboard themes: TOML data files turned into ``textual.theme.Theme`` objects.

A theme file holds the fields of ``Theme`` (``name``, ``primary``, ``background``, ``dark``, ...) and an
optional ``[variables]`` table of Textual design variables. Files are checked completely at load time
(unknown keys, colours that do not parse, a colour system that cannot be generated), so a broken file is
reported once, by name, instead of failing later when the theme is switched on.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional

from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT_THEME = "sollol-dark"
FALLBACK_THEME = "textual-dark"  # built into Textual: used only when sollol-dark itself cannot be loaded

_COLOR_KEYS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
               "surface", "panel", "boost")
_FLOAT_KEYS = ("luminosity_spread", "text_alpha")
_BOOL_KEYS = ("dark", "ansi")
_KNOWN_KEYS = {f.name for f in dataclasses.fields(Theme)}


class ThemeFileError(ValueError):
    """A theme file that cannot be used; the message names the file and the problem."""


@dataclass
class ThemeSet:
    """Themes loaded from one or more folders, and what went wrong on the way."""

    themes: dict[str, Theme] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def bundled_theme_dir() -> Path:
    """The ``themes`` package folder, shipped in the wheel next to ``sollol_tui``.

    Read from the package's own location rather than ``importlib.resources.files``: an editable install
    made before ``themes/__init__.py`` existed imports it as a namespace package, which that API rejects.
    """
    import themes

    file = getattr(themes, "__file__", None)
    if file:
        return Path(file).parent
    for entry in getattr(themes, "__path__", ()):
        if Path(entry).is_dir():
            return Path(entry)
    return Path(str(resources.files("themes")))


def user_theme_dir() -> Path:
    """Themes an operator adds without touching the install: ``~/.config/sollol/themes``."""
    from sollol_core.config import user_config_dir

    return user_config_dir() / "themes"


def theme_from_dict(data: dict[str, Any], source: str, default_name: str = "") -> Theme:
    """Validate the parsed TOML of one theme and build the Theme. Raises ThemeFileError."""
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ThemeFileError(f"{source}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ThemeFileError(f"{source}: 'name' must be a non-empty string")
    values["name"] = name.strip()
    if "primary" not in data:
        raise ThemeFileError(f"{source}: 'primary' colour is required")
    for key in _COLOR_KEYS:
        if key in data:
            values[key] = _color(data[key], f"{source}: '{key}'")
    for key in _FLOAT_KEYS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ThemeFileError(f"{source}: '{key}' must be a number from 0 to 1 (got {value!r})")
            values[key] = float(value)
    for key in _BOOL_KEYS:
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeFileError(f"{source}: '{key}' must be true or false (got {data[key]!r})")
            values[key] = data[key]
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ThemeFileError(f"{source}: [variables] must map names to strings")
    values["variables"] = {str(k): v for k, v in variables.items()}
    theme = Theme(**values)
    try:
        theme.to_color_system().generate()
    except Exception as e:  # noqa: BLE001 - any failure here means the theme cannot be shown
        raise ThemeFileError(f"{source}: cannot build the colour system: {e}") from None
    return theme


def _color(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ThemeFileError(f"{where} must be a colour string (got {value!r})")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeFileError(f"{where}: {value!r} is not a colour") from None
    return value


def load_theme_file(path: Path) -> Theme:
    """One TOML file -> Theme. Raises ThemeFileError naming the file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ThemeFileError(f"{path.name}: not valid TOML: {e}") from None
    except OSError as e:
        raise ThemeFileError(f"{path.name}: cannot read it ({e.strerror})") from None
    return theme_from_dict(data, path.name, default_name=path.stem)


def load_themes(folders: Iterable[Path]) -> ThemeSet:
    """Every ``*.toml`` of the folders, in order; a later folder's theme replaces an earlier one of that name."""
    result = ThemeSet()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeFileError as e:
                result.errors.append(str(e))
                continue
            result.themes[theme.name] = theme
    return result


def choose_theme(requested: str, available: Iterable[str]) -> tuple[str, Optional[str]]:
    """The theme to switch on for `requested`, and a message when it had to fall back."""
    names = set(available)
    if requested in names:
        return requested, None
    fallback = DEFAULT_THEME if DEFAULT_THEME in names else FALLBACK_THEME
    return fallback, f"theme {requested!r} is not available; using {fallback}"
