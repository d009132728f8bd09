"""OSC datagrams → messages, strictly: anything that cannot be read exactly is `Malformed`.

python-osc's parser logs a warning per unknown type tag and skips it (so `/indie/ping ,x` would
pass as a ping), reads a negative blob size backwards, scans strings byte by byte in Python and
recurses into nested bundles. A live server needs a decoder whose work is bounded by the size of
the datagram: this one is iterative, uses `bytes.find` for strings, caps bundle and array
nesting, and refuses unknown type tags, lying sizes and trailing bytes.

A bundle is all or nothing: if any part of it is malformed, none of its messages run.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BUNDLE = b"#bundle\x00"
BUNDLE_HEADER = len(BUNDLE) + 8  # the prefix, then a 64-bit time tag
MAX_BUNDLE_DEPTH = 16  # no DAW nests bundles; a 64 KB datagram could nest ~3000 deep
MAX_ARRAY_DEPTH = 16


class Malformed(ValueError):
    """A datagram that is not a well-formed OSC message or bundle."""


@dataclass(frozen=True)
class Message:
    address: str
    args: list[Any]


Reader = Callable[[bytes, int], tuple[Any, int]]


def decode(data: bytes) -> list[Message]:
    """The messages of one datagram, in order (bundles flattened; time tags ignored).

    Raises:
        Malformed: empty, neither message nor bundle, truncated, an unknown type tag, a size
            that does not fit, bundles nested deeper than MAX_BUNDLE_DEPTH, ...
    """
    if not data:
        raise Malformed("empty datagram")
    messages: list[Message] = []
    pending = [(bytes(data), 0)]  # (element, how many bundles it is inside), next on top
    while pending:
        element, depth = pending.pop()
        if element.startswith(b"/"):
            messages.append(_message(element))
        elif element.startswith(BUNDLE):
            if depth >= MAX_BUNDLE_DEPTH:
                raise Malformed(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
            pending.extend((inner, depth + 1) for inner in reversed(_bundle_elements(element)))
        else:
            raise Malformed("neither an OSC message ('/...') nor a bundle ('#bundle')"
                            if depth == 0 else "a bundle element is neither message nor bundle")
    return messages


def _bundle_elements(data: bytes) -> list[bytes]:
    if len(data) < BUNDLE_HEADER:
        raise Malformed("bundle shorter than its header")
    elements = []
    index = BUNDLE_HEADER
    while index < len(data):
        size, index = _INT32(data, index)
        if size <= 0 or size % 4 or index + size > len(data):
            raise Malformed(f"bundle element size {size} does not fit the "
                            f"{len(data) - index} bytes left")
        elements.append(data[index:index + size])
        index += size
    return elements


def _message(data: bytes) -> Message:
    address, index = _string(data, 0)
    if index == len(data):
        return Message(address, [])  # OSC 1.0 allows a message without type tags
    tags, index = _string(data, index)
    if not tags.startswith(","):
        raise Malformed("type tags must start with ','")
    args: list[Any] = []
    outer: list[list[Any]] = []  # the lists enclosing the current array
    for tag in tags[1:]:
        if tag == "[":
            if len(outer) >= MAX_ARRAY_DEPTH:
                raise Malformed(f"arrays nested deeper than {MAX_ARRAY_DEPTH}")
            outer.append(args)
            args.append([])
            args = args[-1]
        elif tag == "]":
            if not outer:
                raise Malformed("']' without '['")
            args = outer.pop()
        elif tag in _CONSTANTS:
            args.append(_CONSTANTS[tag])
        elif tag in _READERS:
            value, index = _READERS[tag](data, index)
            args.append(value)
        else:
            raise Malformed(f"unknown type tag {tag!r}")
    if outer:
        raise Malformed("'[' without ']'")
    if index != len(data):
        raise Malformed(f"{len(data) - index} bytes after the last argument")
    return Message(address, args)


def _string(data: bytes, index: int) -> tuple[str, int]:
    end = data.find(b"\x00", index)
    if end < 0:
        raise Malformed("a string without its NUL terminator")
    padded = index + (end - index) // 4 * 4 + 4
    if padded > len(data):
        raise Malformed("a string's padding is cut off")
    try:
        return data[index:end].decode("utf-8"), padded
    except UnicodeDecodeError:
        raise Malformed("a string that is not UTF-8") from None


def _blob(data: bytes, index: int) -> tuple[bytes, int]:
    size, index = _INT32(data, index)
    end = index + size
    padded = index + -(-size // 4) * 4
    if size < 0 or padded > len(data):
        raise Malformed(f"blob size {size} does not fit the {len(data) - index} bytes left")
    return data[index:end], padded


def _fixed(fmt: str) -> Reader:
    packer = struct.Struct(fmt)

    def read(data: bytes, index: int) -> tuple[Any, int]:
        end = index + packer.size
        if end > len(data):
            raise Malformed("an argument is cut off")
        return packer.unpack_from(data, index)[0], end

    return read


def _char(data: bytes, index: int) -> tuple[str, int]:
    code, index = _INT32(data, index)
    if not 0 <= code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:  # surrogates cannot be sent back
        raise Malformed(f"character code {code} is not a character")
    return chr(code), index


def _midi(data: bytes, index: int) -> tuple[tuple[int, ...], int]:
    if index + 4 > len(data):
        raise Malformed("an argument is cut off")
    return tuple(data[index:index + 4]), index + 4


_INT32 = _fixed(">i")
_READERS: dict[str, Reader] = {
    "i": _INT32, "h": _fixed(">q"), "f": _fixed(">f"), "d": _fixed(">d"),
    "t": _fixed(">Q"), "r": _fixed(">I"), "s": _string, "S": _string, "b": _blob,
    "c": _char, "m": _midi,
}
_CONSTANTS = {"T": True, "F": False, "N": None, "I": None}
