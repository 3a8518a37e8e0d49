"""Just enough of nginx's configuration syntax to read deploy/nginx.conf in tests:
directives (`name arg ...;`) and blocks (`name arg ... { ... }`), comments dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A quoted string, a brace, a semicolon, or a run of anything else.
TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};"\']+')


@dataclass
class Directive:
    name: str
    args: list[str]
    children: list[Directive] = field(default_factory=list)

    def find(self, name: str, *args: str) -> list[Directive]:
        """Direct children called `name` whose arguments start with `args`."""
        return [c for c in self.children if c.name == name and c.args[: len(args)] == list(args)]

    def one(self, name: str, *args: str) -> Directive:
        found = self.find(name, *args)
        assert len(found) == 1, f"expected one `{name} {' '.join(args)}`, found {len(found)}"
        return found[0]

    def values(self, name: str) -> list[list[str]]:
        return [c.args for c in self.find(name)]


def parse(text: str) -> Directive:
    without_comments = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    tokens = [_unquote(t) for t in TOKEN.findall(without_comments)]
    root = Directive("main", [])
    stack, words = [root], []
    for token in tokens:
        if token == ";":
            stack[-1].children.append(Directive(words[0], words[1:]))
            words = []
        elif token == "{":
            block = Directive(words[0], words[1:])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words} before }}"
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1, "a block is not closed"
    assert not words, f"directive {words} has no ;"
    return root


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    return token
