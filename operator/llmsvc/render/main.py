"""``llmsvc render -f FILE [-o yaml|json]``: print the children of LLMService manifests.

Like ``helm template``: every child of every LLMService document in FILE (``-`` for stdin), in a
stable order (kind, then name). Documents of other kinds are skipped with a note on stderr. Any
problem (unreadable file, bad YAML, invalid LLMService) exits 2 with one line per problem on
stderr, naming the field path and what to change. Only the standard library is imported at
module top; the models and the renderer load inside :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_INVALID = 2


class InputError(Exception):
    """The input cannot be rendered; ``lines`` go to stderr, one per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``llmsvc render``."""
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="manifest file, or - for stdin"
    )
    parser.add_argument(
        "-o", "--output", choices=("yaml", "json"), default="yaml", help="output format"
    )
    parser.add_argument(
        "--image", default=None, help="operator image for the puller and router containers"
    )


def read_text(filename: str) -> str:
    """The contents of FILE, or stdin for ``-``."""
    if filename == "-":
        return sys.stdin.read()
    try:
        with open(filename, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError([f"{filename}: cannot read: {error}"]) from None


def load_documents(text: str, source: str) -> list[Any]:
    """Every non-empty YAML document of ``text``."""
    import yaml

    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise InputError([f"{source}: invalid YAML: {detail}"]) from None


def _label(index: int, doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"document {index}" + (f" ({name})" if name else "")


def select_services(docs: list[Any], source: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, manifest) of every LLMService document; other kinds are skipped with a note."""
    from llmsvc.api import KIND

    selected = []
    for index, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict):
            raise InputError([f"{source}: document {index}: expected a mapping (an LLMService)"])
        if doc.get("kind") == KIND:
            selected.append((_label(index, doc), doc))
        else:
            kind = doc.get("kind")
            print(f"{source}: skipping {_label(index, doc)} of kind {kind!r}", file=sys.stderr)
    if not selected:
        raise InputError([f"{source}: no document of kind {KIND}: nothing to render"])
    return selected


def render_documents(docs: list[Any], source: str, image: str | None) -> list[dict[str, Any]]:
    """The sorted children of every LLMService among ``docs``; InputError lists every problem."""
    from llmsvc.api import InvalidSpecError, parse
    from llmsvc.render import DEFAULT_IMAGE, render, sort_key

    children: list[dict[str, Any]] = []
    problems: list[str] = []
    for label, doc in select_services(docs, source):
        try:
            children += render(parse(doc), image=image or DEFAULT_IMAGE)
        except InvalidSpecError as error:
            problems += [f"{source}: {label}: {line}" for line in error.problems]
    if problems:
        raise InputError(problems)
    return sorted(children, key=sort_key)


def to_yaml(manifest: dict[str, Any]) -> str:
    """One manifest as block YAML: multi-line strings (the rank script) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(manifest, Dumper=Dumper, sort_keys=False, width=100)


def format_output(children: list[dict[str, Any]], output: str) -> str:
    """YAML documents separated by ``---``, or one JSON ``List`` (as ``kubectl -o json``)."""
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": children}, indent=2) + "\n"
    return "".join("---\n" + to_yaml(child) for child in children)


def run(args: argparse.Namespace) -> int:
    """Render FILE; exit 0, or 2 with the problems on stderr."""
    source = "<stdin>" if args.filename == "-" else args.filename
    try:
        docs = load_documents(read_text(args.filename), source)
        children = render_documents(docs, source, args.image)
    except InputError as error:
        for line in error.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(format_output(children, args.output))
    return 0
