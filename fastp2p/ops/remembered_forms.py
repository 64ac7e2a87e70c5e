"""The CPU transposed convolutions' measured forms (fastp2p.ops.conv_transpose), remembered
between processes in one JSON file, ``cpu_deconv_forms.json`` in fastp2p's cache folder
($FASTP2P_CACHE, default ~/.cache/fastp2p), so that only a machine's first process pays for
timing them (most of a U-Net-256's first CPU forward: benchmarks/NOTES.md, "Remembering the
measured forms").

A choice holds for one machine and software: the file keeps one section per CPU model, torch
build and fastp2p build (its version and fastp2p.build_fingerprint: the version number alone
stays the same while the code changes; a build's write drops the sections of the same CPU model
and torch build under other fastp2p builds), and in it one entry per choice key (layer shape, input
size class, thread count, the forms that applied). The file is replaced atomically and merged
with what another process wrote meanwhile; a missing, unreadable or malformed file (not JSON,
nested too deep to parse, of another format, larger than MAX_FILE_BYTES) reads as empty, and a
folder that cannot be written or cannot be found (no FASTP2P_CACHE and no home folder) is left
alone: timing again is the fallback, never an error.
Deleting the file makes the next process measure afresh.
"""
import functools
import json
from pathlib import Path

import torch

from fastp2p.atomic_files import replace_text
from fastp2p.build_fingerprint import version_line
from fastp2p.cache_folder import cache_root
from fastp2p.cpu_info import cpu_model
from fastp2p.json_files import read_json

FILE_NAME = "cpu_deconv_forms.json"
# 2: forms measured with the packed weights packed for the input's size (fastp2p.ops.onednn_packed);
# format 1's were measured with packings that could make oneDNN reorder on every call, so they
# are measured again.
_FORMAT = 2
# What reading or writing the file may raise: unreadable or unwritable (OSError), not UTF-8 or
# not JSON (ValueError; read_json's for nesting too deep to parse), sections nested deeper than
# json's recursion limit to write back (RecursionError).
_UNUSABLE = (OSError, ValueError, RecursionError)
# The most of the file that is read (FileTooLarge, a ValueError, past it: read as unusable, and
# replaced by the next write): a section is a few KiB, one per machine, torch build and fastp2p
# build; a 3 GB file was read whole (3.5 GB of memory, then MemoryError).
MAX_FILE_BYTES = 16 << 20


def path() -> Path:
    """The file; fastp2p.cache_folder.NoCacheFolder (an OSError) where there is no cache
    folder."""
    return cache_root() / FILE_NAME


@functools.cache
def machine() -> str:
    """This file's section for the running process: CPU model, torch build, fastp2p build."""
    return f"{_software()} | {version_line()}"


def _software() -> str:
    """The section key's part before the fastp2p build: sections that share it are one
    machine's under other fastp2p builds, replaced by this build's when it writes (an editable
    install makes a build of every edit: the file would keep one section of each)."""
    return f"{cpu_model()} | torch {torch.__version__}"


class RememberedForms:
    """``get``/``put`` of measured forms by choice key, backed by the file at ``path()`` (read
    once per path; what ``get`` returns is the file's word: the caller checks it)."""

    def __init__(self):
        self._read_from, self._forms = None, {}

    def get(self, key: tuple):
        self._read_if_moved()
        return self._forms.get(repr(key))

    def put(self, key: tuple, form: str) -> None:
        self._read_if_moved()
        self._forms[repr(key)] = form
        try:
            file = path()
            file.parent.mkdir(parents=True, exist_ok=True)
            sections = _read(file)
            mine = {**sections.get(machine(), {}), **self._forms}
            sections = {name: forms for name, forms in sections.items()
                        if not name.startswith(f"{_software()} | ")}
            sections[machine()] = mine
            replace_text(file, json.dumps({"format": _FORMAT, "machines": sections}, indent=1),
                         durable=False)
        except _UNUSABLE:
            # No, a read-only or a full cache folder, or another machine's section nested too
            # deep to write back: measured again by the next process.
            pass

    def _read_if_moved(self) -> None:
        try:
            file = path()
        except OSError:
            file = None  # no cache folder: nothing to read (what this process measured stays)
        if file != self._read_from:
            self._read_from = file
            self._forms = {} if file is None else dict(_read(file).get(machine(), {}))


def _read(file: Path) -> dict:
    """The file's sections ({machine: {key: form}}), or {} where it is missing or unusable."""
    try:
        content = read_json(file, max_bytes=MAX_FILE_BYTES)
    except _UNUSABLE:
        return {}
    if not (isinstance(content, dict) and content.get("format") == _FORMAT
            and isinstance(content.get("machines"), dict)):
        return {}
    return {name: forms for name, forms in content["machines"].items()
            if isinstance(forms, dict)}
