"""Manifest text: YAML or JSON, from a string or a file.

Text is bounded (`MAX_TEXT`) and decoded with YAML's safe loader; a key
written twice in one mapping is an error, as kubectl makes it.

Syntax errors name the line and column; nothing but `ConfigError` escapes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from vmnet.core.errors import ConfigError
from vmnet.manifest.document import parse
from vmnet.manifest.nodes import type_name
from vmnet.manifest.vmi import KINDS, MAX_TEXT, Vmi


def parse_text(text: str, *, source: str = "<manifest>") -> Vmi:
    """Parse YAML or JSON text; in a multi-document YAML, the first VM or VMI.

    Raises:
        ConfigError: syntax error (with line and column), no VM/VMI, or invalid.
    """
    if not isinstance(text, str):
        raise ConfigError(source, f"a manifest must be text, not {type_name(text)}")
    if len(text) > MAX_TEXT:
        raise ConfigError(source, f"larger than {MAX_TEXT} characters")
    docs = [d for d in _decode(text, source) if d is not None]
    if len(docs) == 1:
        return parse(docs[0], source=source)
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in KINDS:
            return parse(doc, source=source)
    raise ConfigError(
        source, f"no VirtualMachine or VirtualMachineInstance among {len(docs)} documents"
    )


class _NotYaml(Exception):
    """A YAML syntax error, as the one line `ConfigError` will show."""


def _yaml_documents(text: str) -> list[object]:
    """YAML's documents, with a key written twice in one mapping an error, as
    kubectl makes it. PyYAML is imported here, not with the module: a JSON
    manifest (KubeVirt's own VMI, `kubectl get -o json`) never loads it."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key.value!r}", key.start_mark
                        )
                    seen.add(key.value)
            return super().construct_mapping(node, deep)

    try:
        return list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _NotYaml(f"{where}{err.problem or err.context}") from err
    except yaml.YAMLError as err:
        raise _NotYaml(f"not YAML: {err}") from err


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        dup = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise ValueError(f"duplicate key {dup!r}")
    return out


def _decode(text: str, source: str) -> list[object]:
    try:
        if text.lstrip()[:1] in ("{", "["):
            return [json.loads(text, object_pairs_hook=_json_object)]
        return _yaml_documents(text)
    except json.JSONDecodeError as err:
        raise ConfigError(source, f"line {err.lineno}, column {err.colno}: {err.msg}") from err
    except _NotYaml as err:
        raise ConfigError(source, str(err)) from err.__cause__
    except ValueError as err:
        raise ConfigError(source, f"invalid value: {err}") from err
    except RecursionError as err:
        raise ConfigError(source, "nested too deeply") from err


def load(path: str) -> Vmi:
    """Read and parse a manifest file (YAML or JSON); `-` is standard input.

    Raises:
        ConfigError: field `--vmi` when the file cannot be read, else as `parse_text`.
    """
    try:
        if path == "-":
            text = sys.stdin.buffer.read(MAX_TEXT + 1).decode("utf-8")
            return parse_text(text, source="<stdin>")
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_TEXT + 1)
    except OSError as err:
        raise ConfigError("--vmi", f"{path}: {err.strerror or err}") from err
    except (UnicodeDecodeError, TypeError, ValueError) as err:
        raise ConfigError("--vmi", f"{path}: cannot read as UTF-8 text") from err
    return parse_text(text, source=str(path))
