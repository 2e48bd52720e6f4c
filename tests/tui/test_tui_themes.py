"""Theme files: the bundled ones load, broken ones are reported by file name, and the fallback is sane."""

from __future__ import annotations

import pytest
from textual.theme import BUILTIN_THEMES

from sollol_tui.themes import (
    DEFAULT_THEME,
    FALLBACK_THEME,
    ThemeFileError,
    bundled_theme_dir,
    choose_theme,
    load_theme_file,
    load_themes,
)


def test_bundled_themes_load():
    loaded = load_themes([bundled_theme_dir()])
    assert loaded.errors == []
    assert set(loaded.themes) == {"sollol-dark", "sollol-light", "sollol-high-contrast"}
    assert loaded.themes["sollol-dark"].dark is True
    assert loaded.themes["sollol-light"].dark is False
    contrast = loaded.themes["sollol-high-contrast"]
    assert (contrast.background, contrast.foreground) == ("#000000", "#FFFFFF")
    assert DEFAULT_THEME in loaded.themes


@pytest.mark.parametrize("text, problem", [
    ('name = "x"\nprimary = "#123456"\n[oops', "not valid TOML"),
    ('name = "x"\nprimary = "#123456"\nshade = "red"\n', "unknown key(s) shade"),
    ('name = "x"\nprimary = "definitely-not"\n', "'primary': 'definitely-not' is not a colour"),
    ('name = "x"\nbackground = "#000000"\n', "'primary' colour is required"),
    ('name = "x"\nprimary = "#123456"\ndark = "yes"\n', "'dark' must be true or false"),
    ('name = "x"\nprimary = "#123456"\ntext_alpha = 3\n', "'text_alpha' must be a number from 0 to 1"),
    ('name = "x"\nprimary = "#123456"\n[variables]\nborder = 3\n', "[variables] must map names to strings"),
])
def test_broken_theme_files_are_named(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ThemeFileError) as e:
        load_theme_file(path)
    assert str(e.value).startswith("bad.toml: ")
    assert problem in str(e.value)


def test_one_broken_file_does_not_hide_the_others(tmp_path):
    (tmp_path / "good.toml").write_text('primary = "#336699"\n')  # name defaults to the file name
    (tmp_path / "bad.toml").write_text('primary = 7\n')
    loaded = load_themes([bundled_theme_dir(), tmp_path, tmp_path / "missing"])
    assert "good" in loaded.themes and "sollol-dark" in loaded.themes
    assert len(loaded.errors) == 1 and loaded.errors[0].startswith("bad.toml: ")


def test_choose_theme_falls_back_to_the_default():
    assert choose_theme("sollol-light", ["sollol-dark", "sollol-light"]) == ("sollol-light", None)
    name, problem = choose_theme("nope", ["sollol-dark", *BUILTIN_THEMES])
    assert name == DEFAULT_THEME and "'nope' is not available" in (problem or "")
    assert choose_theme("nope", list(BUILTIN_THEMES))[0] == FALLBACK_THEME
