"""Syntax layer: configuration text -> a tree of ``Directive`` nodes that keep file:line:col.

The grammar (``srs.lark``) knows only directives, args, blocks, comments and quotes; this
module runs it, turns Lark's syntax errors into plain ``path:line:col: message`` words, and
expands ``include file...;`` in place, in the block where it appears.  What a directive
means is not decided here (see ``registry`` and ``builder``).

Invariants: every ``Directive`` carries the file it came from (included files keep their
own path; a relative include resolves next to the including file, else in the working
directory as in SRS), args are unquoted strings, ``children is None`` for ``name args;`` and a tuple
(possibly empty) for ``name args { ... }``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from srv.conf.errors import ConfigError

__all__ = ["Directive", "parse_file", "parse_text"]


@dataclass(frozen=True)
class Directive:
    """One ``name args...;`` (``children is None``) or ``name args... { ... }`` node."""

    name: str
    args: tuple[str, ...]
    children: tuple[Directive, ...] | None
    file: str
    line: int
    col: int
    #: (line, col) of each argument, so a bad value is reported where it is written
    arg_positions: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def is_block(self) -> bool:
        return self.children is not None

    def where(self) -> str:
        """``file:line:col`` of this directive."""
        return f"{self.file}:{self.line}:{self.col}"

    def text(self) -> str:
        """The directive as written, without its block body, e.g. ``listen 1935``."""
        return " ".join((self.name, *self.args))


@functools.cache
def _grammar() -> Lark:
    text = Path(__file__).with_name("srs.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", lexer="basic", propagate_positions=True)


def parse_file(path: str) -> list[Directive]:
    """Parse ``path`` and every file it includes; raise ``ConfigError`` on the first problem."""
    text = _read(path, None)
    return _parse(text, path, (_identity(path),))


def parse_text(text: str, path: str) -> list[Directive]:
    """Parse ``text`` as if read from ``path`` (includes resolve against its folder)."""
    return _parse(text, path, (_identity(path),))


def _identity(path: str) -> str:
    return os.path.realpath(path)


def _read(path: str, include: Directive | None) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        if include is None:
            raise ConfigError(path, 0, 0, "no such file") from None
        raise _at(include, f'cannot include "{path}": no such file') from None
    except IsADirectoryError:
        if include is None:
            raise ConfigError(path, 0, 0, "is a directory, not a config file") from None
        raise _at(include, f'cannot include "{path}": is a directory') from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if include is None:
            raise ConfigError(path, 0, 0, f"cannot read: {reason}") from None
        raise _at(include, f'cannot include "{path}": {reason}') from None


def _at(d: Directive, message: str) -> ConfigError:
    return ConfigError(d.file, d.line, d.col, message)


def _parse(text: str, path: str, stack: tuple[str, ...]) -> list[Directive]:
    try:
        tree = _grammar().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(text, path, e) from None
    directives = [_to_directive(node, path) for node in tree.children if isinstance(node, Tree)]
    return _expand_includes(directives, stack)


def _to_directive(node: Tree[Token], path: str) -> Directive:
    name_token = node.children[0]
    assert isinstance(name_token, Token)
    args: list[str] = []
    positions: list[tuple[int, int]] = []
    children: list[Directive] | None = [] if node.data == "block" else None
    for child in node.children[1:]:
        if not isinstance(child, Tree):
            continue
        if child.data == "value":
            token = child.children[0]
            assert isinstance(token, Token)
            args.append(_unquote(token))
            positions.append((token.line or 0, token.column or 0))
        elif children is not None:
            children.append(_to_directive(child, path))
    return Directive(
        name=str(name_token),
        args=tuple(args),
        children=None if children is None else tuple(children),
        file=path,
        line=name_token.line or 0,
        col=name_token.column or 0,
        arg_positions=tuple(positions),
    )


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unquote(token: Token) -> str:
    """Strip quotes; inside them ``\\"``, ``\\'``, ``\\\\``, ``\\n``, ``\\t``, ``\\r`` are escapes."""
    if token.type == "WORD":
        return str(token)
    body = str(token)[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "\"'\\":
                out.append(nxt)
                i += 2
                continue
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _expand_includes(directives: list[Directive], stack: tuple[str, ...]) -> list[Directive]:
    out: list[Directive] = []
    for d in directives:
        if d.name == "include":
            out.extend(_include(d, stack))
        elif d.children is not None:
            children = tuple(_expand_includes(list(d.children), stack))
            out.append(Directive(d.name, d.args, children, d.file, d.line, d.col))
        else:
            out.append(d)
    return out


def _include(d: Directive, stack: tuple[str, ...]) -> list[Directive]:
    if d.children is not None:
        raise _at(d, 'include is a simple directive: write "include file...;" without a block')
    if not d.args:
        raise _at(d, "include needs at least one file name")
    out: list[Directive] = []
    for arg in d.args:
        target = _resolve(arg, d.file)
        if not os.path.isabs(arg) and not os.path.exists(target):
            raise _at(d, f'cannot include "{target}": no such file '
                         f'(nor "{arg}" in the working directory {os.getcwd()})')
        identity = _identity(target)
        if identity in stack:
            chain = " -> ".join(_shorten(p) for p in (*stack[stack.index(identity) :], identity))
            raise _at(d, f'include cycle: "{arg}" is already being read ({chain})')
        text = _read(target, d)
        out.extend(_parse(text, target, (*stack, identity)))
    return out


def _resolve(arg: str, including: str) -> str:
    """Where ``include arg;`` in ``including`` points.

    A relative path is looked up next to the including file first (so a config tree can be
    moved as a whole), then in the working directory, which is where SRS looks: its users run
    ``./objs/srs -c conf/include.conf`` from trunk and write ``include ./conf/x.conf;``.  When
    neither exists the first is returned, so the error names the path next to the includer.
    """
    if os.path.isabs(arg):
        return os.path.normpath(arg)
    beside = os.path.normpath(os.path.join(os.path.dirname(including), arg))
    if os.path.exists(beside):
        return beside
    cwd = os.path.normpath(arg)
    return cwd if os.path.exists(cwd) else beside


def _shorten(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


# --- syntax errors in plain words -------------------------------------------------------

_MAX_SHOWN = 40


def _syntax_error(text: str, path: str, e: UnexpectedInput) -> ConfigError:
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        if ch in ("'", '"'):
            quote = "double" if ch == '"' else "single"
            return ConfigError(
                path, e.line, e.column, f"unterminated {quote} quote: the {ch} opened here is never closed"
            )
        return ConfigError(path, e.line, e.column, f"unexpected character {_show(ch)}")
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        return _eof_error(text, path)
    assert isinstance(e, UnexpectedToken)
    token = e.token
    line, col = token.line or 0, token.column or 0
    opened, statement = _context(text[: token.start_pos or 0])
    value = str(token)
    if token.type in ("DQSTRING", "SQSTRING") and not statement:
        return ConfigError(path, line, col, f"unexpected {_show(value)} (a directive name cannot be quoted)")
    if value == ";" and not statement:
        return ConfigError(path, line, col, 'unexpected ";" (empty directive)')
    if value == "{" and not statement:
        return ConfigError(path, line, col, 'unexpected "{" (a block needs a name, as in "vhost name {")')
    if value == "}" and statement:
        return ConfigError(
            path, line, col, f'unexpected "}}" (missing ";" after {_show(_join(statement))}?)'
        )
    if value == "}" and not opened:
        return ConfigError(path, line, col, 'unexpected "}" (there is no open block to close)')
    return ConfigError(path, line, col, f"unexpected {_show(value)}")


def _eof_error(text: str, path: str) -> ConfigError:
    opened, statement = _context(text)
    if statement:
        first = statement[0]
        return ConfigError(
            path,
            first.line or 0,
            first.column or 0,
            f'unexpected end of file (missing ";" after {_show(_join(statement))}?)',
        )
    if opened:
        name, *_ = opened[-1]
        return ConfigError(
            path,
            name.line or 0,
            name.column or 0,
            f'unexpected end of file: block {_show(_join(opened[-1]))} is never closed (missing "}}")',
        )
    return ConfigError(path, 1, 1, "unexpected end of file")


def _context(prefix: str) -> tuple[list[list[Token]], list[Token]]:
    """Blocks still open and the tokens of the unfinished statement at the end of ``prefix``."""
    opened: list[list[Token]] = []
    statement: list[Token] = []
    for token in _grammar().lex(prefix):
        value = str(token)
        if token.type in ("WORD", "DQSTRING", "SQSTRING"):
            statement.append(token)
        elif value == "{":
            opened.append(statement)
            statement = []
        elif value == "}":
            if opened:
                opened.pop()
            statement = []
        else:
            statement = []
    return opened, statement


def _join(tokens: list[Token]) -> str:
    text = " ".join(str(t) for t in tokens)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _show(value: str) -> str:
    return '"' + value.replace("\n", "\\n") + '"'
