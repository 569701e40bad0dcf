"""Parse WeChat callback XML defensively and render replies that cannot be broken.

WeChat messages are a flat <xml> element (a few events nest one list). Anything that
is not plain elements and text (DTDs, entity declarations, comments, processing
instructions beyond the XML declaration) is refused before the parser sees it, so
entity bombs and external entities cost nothing.

The control characters XML forbids are removed first, so the guard looks at exactly
the bytes the parser parses (a NUL inside "<!DOCTYPE" cannot hide it from the guard).

The result is generic: a child is text, a dict (nested elements) or, when its name
repeats, a list of those. `bot.wechat.inbound` reduces it to the typed values the
dialogs use, so no handler sees these shapes.
"""

from __future__ import annotations

import re
from typing import Any
from xml.parsers import expat

MAX_DEPTH = 6
MAX_ELEMENTS = 400

_MARKUP_DECLARATION = re.compile(rb"<!(?!\[CDATA\[)")
_PROCESSING_INSTRUCTION = re.compile(rb"<\?(?!xml[\s?])", re.IGNORECASE)
_CDATA_SECTION = re.compile(rb"<!\[CDATA\[.*?\]\]>", re.DOTALL)
# Characters XML 1.0 forbids; WeChat users can still type some of them.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_INVALID_XML_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class XMLRejected(ValueError):
    """The body is not a WeChat message we are willing to parse."""


def _refuse(*_args: Any) -> None:
    raise XMLRejected("DTD and entity declarations are not allowed")


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """Return the children of the root element as a dict (text, nested dict or list)."""
    # A lone surrogate is passed through as bytes the parser refuses (400), not an encode error.
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    # Before the guard: what it checks is what the parser gets. (Such bytes never occur
    # inside a multi-byte UTF-8 sequence, so removing them cannot change other characters.)
    raw = _INVALID_XML_BYTES.sub(b"", raw)
    markup = _CDATA_SECTION.sub(b"", raw)  # user text inside CDATA may hold anything
    if _MARKUP_DECLARATION.search(markup) or _PROCESSING_INSTRUCTION.search(markup):
        raise XMLRejected("DTD, entity, comment or processing instruction refused")

    parser = expat.ParserCreate("utf-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse

    stack: list[tuple[str, dict[str, Any], list[str]]] = []
    root: list[tuple[str, dict[str, Any]]] = []  # (name, children) of the root, once closed
    count = 0

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if len(stack) >= MAX_DEPTH or count > MAX_ELEMENTS:
            raise XMLRejected("XML too deep or too large")
        stack.append((name, {}, []))

    def end(name: str) -> None:
        _, children, text = stack.pop()
        value: Any = children if children else "".join(text)
        if not stack:
            root.append((name, children))
            return
        parent = stack[-1][1]
        if name in parent:
            existing = parent[name]
            parent[name] = existing + [value] if isinstance(existing, list) else [existing, value]
        else:
            parent[name] = value

    def chars(data: str) -> None:
        if stack:
            stack[-1][2].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise XMLRejected(f"malformed XML: {exc}") from None
    if not root or root[0][0] != "xml":
        raise XMLRejected("root element must be <xml>")
    return root[0][1]


def cdata(text: str) -> str:
    """A CDATA section that stays one section whatever the text holds."""
    clean = _INVALID_XML_CHARS.sub("", text)
    return "<![CDATA[" + clean.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    return (
        "<xml>"
        f"<ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{cdata(content)}</Content>"
        "</xml>"
    )
