"""Syntax layer of srv.conf: grammar, quotes, comments, positions, include, syntax errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from srv.conf import ConfigError, Directive, parse_file, parse_text


def test_simple_directives_and_nested_blocks_keep_line_and_column() -> None:
    text = "listen 1935;\nvhost a {\n    play {\n        gop_cache on;\n    }\n}\n"
    tree = parse_text(text, "conf/x.conf")
    assert tree[0] == Directive("listen", ("1935",), None, "conf/x.conf", 1, 1)
    vhost = tree[1]
    assert (vhost.name, vhost.args, vhost.line, vhost.col) == ("vhost", ("a",), 2, 1)
    assert vhost.children is not None
    play = vhost.children[0]
    assert (play.line, play.col, play.args) == (3, 5, ())
    assert play.children == (Directive("gop_cache", ("on",), None, "conf/x.conf", 4, 9),)


def test_empty_block_is_a_block_and_simple_directive_has_no_children() -> None:
    tree = parse_text("vhost a { }\ndaemon off;", "x.conf")
    assert tree[0].children == ()
    assert tree[0].is_block
    assert tree[1].children is None


def test_quotes_comments_and_escapes() -> None:
    text = "a \"x y\" 'q' \"\\\"in\\\"\"; # comment; { }\nb c#d; #e\n"
    tree = parse_text(text, "x.conf")
    assert tree[0].args == ("x y", "q", '"in"')
    assert tree[1].args == ("c#d",)
    assert len(tree) == 2


def test_quoted_arg_may_span_lines() -> None:
    tree = parse_text('a "one\ntwo";', "x.conf")
    assert tree[0].args == ("one\ntwo",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen 1935\n}", 'conf/x.conf:2:1: unexpected "}" (missing ";" after "listen 1935"?)'),
        ("vhost x {\n  listen 1;\n",
         'conf/x.conf:1:1: unexpected end of file: block "vhost x" is never closed (missing "}")'),
        ("daemon off;\nlisten 1935", 'conf/x.conf:2:1: unexpected end of file (missing ";" after "listen 1935"?)'),
        ('listen "1935;\n', "conf/x.conf:1:8: unterminated double quote: the \" opened here is never closed"),
        ("listen '1935;\n", "conf/x.conf:1:8: unterminated single quote: the ' opened here is never closed"),
        ("listen 1935;\n;\n", 'conf/x.conf:2:1: unexpected ";" (empty directive)'),
        ("listen 1935;\n}\n", 'conf/x.conf:2:1: unexpected "}" (there is no open block to close)'),
        ("{ }", 'conf/x.conf:1:1: unexpected "{" (a block needs a name, as in "vhost name {")'),
        ('"listen" 1935;', 'conf/x.conf:1:1: unexpected ""listen"" (a directive name cannot be quoted)'),
    ],
)
def test_syntax_errors_say_where_and_what_in_plain_words(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "conf/x.conf")
    assert str(info.value) == expected


def test_config_error_carries_its_parts() -> None:
    with pytest.raises(ConfigError) as info:
        parse_text("a\n  }", "p.conf")
    e = info.value
    assert (e.path, e.line, e.col) == ("p.conf", 2, 3)
    assert e.message.startswith('unexpected "}"')


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_include_expands_in_place_relative_to_the_including_file(tmp_path: Path) -> None:
    _write(tmp_path / "conf" / "vhosts" / "a.conf", "vhost a {\n    include play.conf;\n}\n")
    _write(tmp_path / "conf" / "vhosts" / "play.conf", "play { gop_cache off; }\n")
    main = _write(tmp_path / "conf" / "main.conf", "listen 1935;\ninclude vhosts/a.conf;\ndaemon off;\n")
    tree = parse_file(main)
    assert [d.name for d in tree] == ["listen", "vhost", "daemon"]
    vhost = tree[1]
    assert vhost.file == str(tmp_path / "conf" / "vhosts" / "a.conf")
    assert vhost.children is not None and vhost.children[0].name == "play"
    assert vhost.children[0].file.endswith("play.conf")
    assert (vhost.children[0].line, vhost.children[0].col) == (1, 1)


def test_include_takes_several_files_and_absolute_paths(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.conf", "pid a.pid;")
    _write(tmp_path / "two.conf", "daemon off;")
    main = _write(tmp_path / "sub" / "main.conf", f"include {one} ../two.conf;")
    assert [d.name for d in parse_file(main)] == ["pid", "daemon"]


def test_include_of_a_missing_file_points_at_the_include_line(tmp_path: Path) -> None:
    main = _write(tmp_path / "main.conf", "listen 1935;\n  include nope.conf;\n")
    with pytest.raises(ConfigError) as info:
        parse_file(main)
    missing = tmp_path / "nope.conf"
    assert str(info.value) == (f'{main}:2:3: cannot include "{missing}": no such file '
                               f'(nor "nope.conf" in the working directory {os.getcwd()})')
    absolute = _write(tmp_path / "abs.conf", f"include {missing};\n")
    with pytest.raises(ConfigError) as info:
        parse_file(absolute)
    assert str(info.value) == f'{absolute}:1:1: cannot include "{missing}": no such file'


def test_include_falls_back_to_the_working_directory_as_srs_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SRS's trunk: ./objs/srs -c conf/include.conf, which says include ./conf/include.vhost.conf;
    _write(tmp_path / "conf" / "include.vhost.conf", "vhost v { }\n")
    _write(tmp_path / "conf" / "include.conf", "listen 1935;\ninclude ./conf/include.vhost.conf;\n")
    monkeypatch.chdir(tmp_path)
    tree = parse_file("conf/include.conf")
    assert [d.name for d in tree] == ["listen", "vhost"]
    assert tree[1].file == "conf/include.vhost.conf"


def test_include_prefers_the_including_files_folder_over_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "conf" / "v.conf", "pid beside.pid;\n")
    _write(tmp_path / "v.conf", "pid cwd.pid;\n")
    main = _write(tmp_path / "conf" / "main.conf", "include v.conf;\n")
    monkeypatch.chdir(tmp_path)
    assert parse_file(main)[0].args == ("beside.pid",)


def test_include_cycle_is_an_error_at_the_include_that_closes_it(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.conf", "include b.conf;\n")
    b = _write(tmp_path / "b.conf", "daemon off;\ninclude a.conf;\n")
    with pytest.raises(ConfigError) as info:
        parse_file(a)
    assert str(info.value).startswith(f'{b}:2:1: include cycle: "a.conf" is already being read')


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.conf", "include a.conf;\n")
    with pytest.raises(ConfigError, match="include cycle"):
        parse_file(a)


def test_syntax_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.conf", "\n\nlisten 1935\n")
    main = _write(tmp_path / "main.conf", "include bad.conf;")
    with pytest.raises(ConfigError) as info:
        parse_file(main)
    assert str(info.value) == f'{bad}:3:1: unexpected end of file (missing ";" after "listen 1935"?)'


def test_include_must_be_simple_and_name_a_file(tmp_path: Path) -> None:
    main = _write(tmp_path / "main.conf", "include;")
    with pytest.raises(ConfigError, match="include needs at least one file name"):
        parse_file(main)
    main = _write(tmp_path / "main.conf", "include x { }")
    with pytest.raises(ConfigError, match="include is a simple directive"):
        parse_file(main)


def test_missing_top_level_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        parse_file("/nonexistent/srv.conf")
