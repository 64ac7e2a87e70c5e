"""The index of what ``fastp2p pack`` writes, and checking a pack against it.

Layout of one packed phase folder::

    index.json          format, version, preprocess ("resize_and_crop"), load_size, height,
                        width (of one half), channels, count, pairs_per_shard (planned),
                        dataset_mode, skip_bad, gray, phase,
                        dataroot (absolute, at pack time), shards [{file, count, sha256,
                        crc32, plan, skipped, and with gray: gray_file, gray_sha256,
                        gray_crc32}], sources [[A, B]] (relative to dataroot, in pair order),
                        skipped [[file, why]] (with --skip-bad: files the scan left out,
                        then pairs that failed while packing)
    shard-00000.u8      count x height x (2 * width) x 3 uint8, row-major (NHWC), no header
    gray-00000.u8       (--gray packs) count x height x (2 * width) uint8: each half converted
                        to grayscale before its resize, as --input_nc/--output_nc 1 take it
    pack-state.json     while a pack is written (removed once index.json is): a header line
                        {format: "fastp2p-pack-state", version, load_size, dataroot}, then a
                        line per finished shard, its record as pack made it (the index's shard
                        fields and its sources), appended and fsynced as the shard is done

Nothing in the index is trusted: ``read_index`` checks it against its schema (and its size,
MAX_INDEX_BYTES, before reading it), and shard files must be plain names inside the pack
folder; a string of it that a message shows (the recorded dataroot, a skipped file and why) is
made ``printable`` first, so that no control character of it reaches the terminal. The state file
is read by ``read_pack_state``: a last line cut short (a crash while it was appended) is a shard
not recorded yet, anything else that is not what pack writes is refused.
``bad_shard_files`` checks every shard's size and checksums, naming each bad one
(``verify_pack``: raising for the first); ``lock_file_problem`` names a lock file that a
training would refuse. Also here: the plan digest by which a re-run of `fastp2p pack` knows
which shards it keeps, and the `fastp2p pack` command that a refusal tells the user to run
(``repack_hint``).
Reading the pairs is ``fastp2p.data.packed``'s job.

No numpy or torch here: checking an index and its shards (`fastp2p pack --verify`) needs neither.
"""
import errno
import hashlib
import json
import math
import os
import re
import shlex
import stat
import zlib
from pathlib import Path

from fastp2p.atomic_files import NotAPlainFile, open_plain_file
from fastp2p.data.errors import DataError, counted, printable
from fastp2p.data.folder_lock import LOCK_NAME, pack_running
from fastp2p.file_reads import FileTooLarge, NotAFileToRead, read_error_advice, read_text
from fastp2p.json_files import is_utf8, parse_json, read_json
from fastp2p.option_types import MAX_LOAD_SIZE
from fastp2p.terminal import stderr_bar

PHASES = ("train", "val", "test")   # the phase folders a pack may hold: OUT/PHASE/index.json
INDEX_NAME = "index.json"
STATE_NAME = "pack-state.json"  # what a pack wrote so far; removed once the index is written
FORMAT = "fastp2p-pack"
VERSION = 2  # 2: shards carry a CRC32
# pack-state.json: a header line, then a line per finished shard (before: one JSON object,
# {"load_size", "shards": {file: record}}, rewritten whole after every shard: quadratic)
STATE_FORMAT = "fastp2p-pack-state"
STATE_VERSION = 1
# The most bytes of an index.json (or pack-state.json) that are read: more is refused unread, as
# reading and parsing take about seven times its size in memory at their peak (measured: an index
# of a million pairs, 44 MB, rose peak RSS by 310 MB: two short strings and a list per pair).
# An index holds a record per shard (~230 bytes) and the source names of every pair
# (["train/0000000.jpg", ...]: ~44 bytes a pair, more with longer names). 10 million pairs, the
# most --synthetic writes, at the default pairs per shard (546 at --load_size 286: 18,316
# shards) make ~4 MB of records and ~440 MB of names; 1 GiB leaves room for names about 2.5
# times as long at that count.
MAX_INDEX_BYTES = 1 << 30


def read_bookkeeping(path: Path):
    """The parsed JSON of a pack's index.json at ``path`` (``read_json``'s errors;
    FileTooLarge past MAX_INDEX_BYTES, before reading it). Its pack-state.json:
    ``read_pack_state``."""
    return read_json(path, MAX_INDEX_BYTES)


def state_header(load_size: int, dataroot: str) -> dict:
    """The first line of a pack-state.json (``read_pack_state``); ``dataroot``: absolute."""
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "load_size": load_size,
            "dataroot": dataroot}


def state_line(item: dict) -> bytes:
    """One line of a pack-state.json: the header or a shard record, as JSON (ASCII: a name's
    other characters as \\uXXXX, so no byte of it is a newline) and its newline."""
    return (json.dumps(item) + "\n").encode("ascii")


def read_pack_state(path: Path) -> dict:
    """What the pack-state.json at ``path`` records: {"load_size", "dataroot": as its header
    says (None where it does not: an older fastp2p recorded no dataroot), "shards": {file:
    record}} (a later line for the same file wins). Its last
    line, if it lacks its newline or is not JSON, was cut short by a crash while it was
    appended: that shard is not recorded. A state file of an older fastp2p (one JSON object,
    {"load_size", "shards": {file: record}}) is read as it is. Raises OSError (cannot be
    read) or ValueError in one line (not UTF-8, larger than MAX_INDEX_BYTES, a header of
    another version, a line before the last that is no JSON object with a "file" name, an
    older state whose "shards" is no object). The records themselves are not checked here."""
    # surrogateescape: bytes that are not UTF-8 in a cut-short last line do not make the whole
    # file unreadable; newline="": a line ends at a "\n" only, as written
    text = read_text(path, MAX_INDEX_BYTES, encoding="utf-8", errors="surrogateescape",
                     newline="")
    lines = text.split("\n")
    header = _json_or_none(lines[0])
    if not (isinstance(header, dict) and header.get("format") == STATE_FORMAT):
        # an older state is one line: its header's parse is the whole text's
        return _older_state(text, header if len(lines) == 1 else None)
    version = header.get("version")
    if not _is_int(version) or version != STATE_VERSION:   # `true` and 1.0 equal 1 in Python
        raise ValueError(f"line 1: pack state version {version}, written by a newer fastp2p "
                         f"(this one reads version {STATE_VERSION})"
                         if _is_int(version, STATE_VERSION + 1) else
                         f"line 1: its version is not {STATE_VERSION}, the pack state version "
                         "this fastp2p reads")
    lines, last = lines[1:-1], lines[-1]   # last: "" after the final newline, else cut short
    if lines and last == "" and _json_or_none(lines[-1]) is None:
        lines.pop()     # cut short at the end, where a crash leaves it (zeros, a half line)
    shards = {}
    for number, line in enumerate(lines, start=2):
        if not is_utf8(line):
            raise ValueError(f"line {number}: not UTF-8 text")
        try:
            record = parse_json(line)
        except ValueError as error:
            raise ValueError(f"line {number}: not JSON ({error})") from None
        if not isinstance(record, dict) or not isinstance(record.get("file"), str):
            raise ValueError(f'line {number}: not a shard record (a JSON object with its "file")')
        shards[record["file"]] = record
    return {"load_size": header.get("load_size"), "dataroot": header.get("dataroot"),
            "shards": shards}


def _json_or_none(text: str):
    try:
        return parse_json(text)
    except ValueError:
        return None


def _older_state(text: str, state=None) -> dict:
    """The state of an older fastp2p's interrupted pack: one JSON object (ValueError if
    ``text`` is none, or its "shards" is no object); ``state``: ``text`` parsed, if it was."""
    if not is_utf8(text):
        raise ValueError("not UTF-8 text")
    if state is None:
        try:
            state = parse_json(text)
        except ValueError as error:
            raise ValueError(f"neither a header line nor an older fastp2p's state: not JSON "
                             f"({error})") from None
    if not isinstance(state, dict) or not isinstance(state.get("shards"), dict):
        raise ValueError(f'neither a header line ({{"format": "{STATE_FORMAT}", ...}}) nor an '
                         'older fastp2p\'s state (an object with its "shards")')
    return state


def not_a_regular_file(path: Path) -> str | None:
    """What is at ``path`` when it is there but is no regular file (followed through links):
    "a folder", "a FIFO", "a device", "a socket"; None for a regular file or nothing there."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device")


def pack_command_line(phase_dir: Path, index=None) -> str:
    """The `fastp2p pack` command that (re)writes ``phase_dir`` with the options its index
    records (``index``: the parsed index, possibly damaged or None: what it lacks is named as
    a placeholder). Run as printed, it resumes and rewrites only what is bad or missing."""
    index = index if isinstance(index, dict) else {}
    out = Path(os.path.abspath(phase_dir))

    def recorded(field, valid, placeholder):
        value = index.get(field)
        return shlex.quote(str(value)) if valid(value) else placeholder

    # a dataroot with control characters (a newline, a terminal's escapes) is not shown: the
    # command could not be copied as shown anyway
    words = ["fastp2p pack",
             recorded("dataroot", lambda v: isinstance(v, str) and v and printable(v) == v,
                      "DATAROOT"),
             shlex.quote(printable(out.parent)), "--phase", shlex.quote(printable(out.name)),
             "--load_size", recorded("load_size", _is_int, "SIZE_IT_WAS_PACKED_AT"),
             "--dataset_mode", recorded("dataset_mode", lambda v: v in ("aligned", "two_folders"),
                                        "aligned")]
    if _is_int(index.get("pairs_per_shard"), 1):
        words += ["--pairs-per-shard", str(index["pairs_per_shard"])]
    if _packed_with_skip_bad(index):
        words.append("--skip-bad")
    if index.get("gray") is True:
        words.append("--gray")
    return " ".join(words)


def repack_command_line(phase_dir: Path, index, load_size: int) -> str:
    """The `fastp2p pack ... --overwrite` command that packs ``phase_dir`` again at
    ``load_size``, with the other options its index records but the shard size: the recorded
    one fitted the old size (pack's automatic choice, most often), and all is rewritten anyway."""
    index = dict(index if isinstance(index, dict) else {}, load_size=load_size,
                 pairs_per_shard=None)
    return f"{pack_command_line(phase_dir, index)} --overwrite"


def plan_settings(load_size: int, dataset_mode: str, skip_bad: bool, gray: bool) -> dict:
    """The options a shard's bytes depend on, as its plan digest takes them."""
    settings = {"format": FORMAT, "version": VERSION, "load_size": load_size,
                "dataset_mode": dataset_mode, "skip_bad": skip_bad}
    if gray:    # only then: the plans of packs made before --gray existed stay the same
        settings["gray"] = True
    return settings


def plan_digest(dataroot: Path, pairs, settings: dict) -> str:
    """What a shard's bytes depend on: settings, and each source's name, size and mtime."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted({p for pair in pairs for p in pair}):
        stat = (Path(dataroot) / name).stat()
        # surrogateescape: a file name that is not valid UTF-8 (its bytes as os.fsdecode keeps
        # them); any other name encodes as before, so existing plans stay the same
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode(
            "utf-8", "surrogateescape"))
    return digest.hexdigest()


def _packed_with_skip_bad(index: dict) -> bool | None:
    """Whether the pack was made with --skip-bad; None if its index cannot tell. An index
    written before the "skip_bad" field existed shows it by a pair skipped while packing, or
    by which value gives its first shard's plan digest (while its sources are unchanged)."""
    if "skip_bad" in index:
        return index["skip_bad"] is True
    if isinstance(index.get("skipped"), list) and index["skipped"]:
        return True
    try:
        shard = index["shards"][0]
        pairs = index["sources"][:shard["count"]]
        for skip_bad in (False, True):
            settings = plan_settings(index["load_size"], index["dataset_mode"], skip_bad,
                                     gray=False)
            if plan_digest(index["dataroot"], pairs, settings) == shard["plan"]:
                return skip_bad
    except (OSError, LookupError, TypeError, ValueError, AttributeError):
        pass        # a damaged index, or sources gone
    return None


def repack_hint(phase_dir: Path, index=None) -> str:
    unsure = (isinstance(index, dict) and index.get("format") == FORMAT
              and _packed_with_skip_bad(index) is None)
    # without the --skip-bad it was made with, the re-run packs every shard again (same pairs)
    return (f"re-run `{pack_command_line(phase_dir, index)}` (it resumes and rewrites bad "
            f"shards{'; add --skip-bad if the pack was made with it' if unsure else ''})")


def unfinished_pack_error(phase_dir: Path) -> DataError | None:
    """The error to raise for ``phase_dir`` when it holds a pack whose index is not written yet
    (its state file, some shards, no index.json): a PackFolderBusy while a `fastp2p pack` writes
    it now (its lock is held: try again later), a DataError where one stopped before the end;
    None otherwise."""
    phase_dir = Path(phase_dir)
    if (phase_dir / INDEX_NAME).exists() or not (phase_dir / STATE_NAME).is_file():
        return None
    return pack_running(phase_dir) or DataError(
        f"{phase_dir}: an unfinished pack ({STATE_NAME} and shards, no {INDEX_NAME} yet: it "
        "stopped before the end); run the same `fastp2p pack` command again, which resumes it")


def shards_without_index(phase_dir: Path) -> str | None:
    """What to say of ``phase_dir`` when pack's shards are there but no index.json nor state
    file (removed, or left out of a copy), to someone told it holds no dataset; else None."""
    phase_dir = Path(phase_dir)
    # anything at the index's name is read_index's to name (is_packed takes it); a state file
    # that is no regular file is none
    if ((phase_dir / INDEX_NAME).exists() or (phase_dir / STATE_NAME).is_file()
            or not any(phase_dir.glob("shard-*.u8"))):
        return None
    return (f"{phase_dir}: pack shards without their {INDEX_NAME} (removed, or left out of a "
            "copy); copy it back, or run the `fastp2p pack DATAROOT OUT` that made them again "
            "(it packs the shards anew)")


def is_packed(phase_dir: Path) -> bool:
    """Whether ``phase_dir`` holds a pack: an index.json beside pack's shard files, or one that
    says it is fastp2p's pack format. Another program's index.json in a folder of images does
    not make it a pack (the images are read, as the reference reads them); a damaged index of
    a real pack still does, so reading it names what is wrong (an index.json that is a folder,
    a FIFO or a device among shards too: ``read_index`` refuses it)."""
    phase_dir = Path(phase_dir)
    if not (phase_dir / INDEX_NAME).is_file():
        return bool(not_a_regular_file(phase_dir / INDEX_NAME)
                    and any(phase_dir.glob("shard-*.u8")))
    if any(phase_dir.glob("shard-*.u8")):
        return True
    try:
        index = read_bookkeeping(phase_dir / INDEX_NAME)
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and index.get("format") == FORMAT


def foreign_index_problem(phase_dir: Path) -> str | None:
    """What makes the index.json in ``phase_dir`` no fastp2p pack's (for one that ``is_packed``
    does not take for a pack's), naming it: it cannot be read, is no JSON object, or lacks
    pack's "format", and the first field the schema check finds wrong, or it is no regular
    file; None where there is no index.json."""
    path = Path(phase_dir) / INDEX_NAME
    if not path.is_file():
        what = not_a_regular_file(path)
        return what and f"{path}: {INDEX_NAME} is not a regular file ({what})"
    try:
        index = read_bookkeeping(path)
    except (OSError, ValueError) as error:
        why = f"unreadable: {error}"
    else:
        if not isinstance(index, dict):
            why = "not a JSON object"
        else:
            why = (f'its "format" is {json.dumps(index["format"])}, not "{FORMAT}"'
                   if "format" in index else f'no "format": "{FORMAT}" in it')
            problem = _schema_problem(index)
            why += f"; {problem}" if problem else ""
    return f"{path} is not a fastp2p pack's index ({why})"


def pair_shape(index: dict) -> tuple[int, int, int]:
    return index["height"], 2 * index["width"], index["channels"]


def stored_files(index: dict) -> list[tuple[str, tuple]]:
    """(key prefix, pair shape) of each kind of shard file a pack holds: "" for the colour
    shards (``file``, ``sha256``, ``crc32``), "gray_" for the grayscale ones of a --gray pack."""
    colour = pair_shape(index)
    return [("", colour)] + ([("gray_", colour[:2])] if index.get("gray") else [])


def read_index(phase_dir: Path) -> dict:
    path = Path(phase_dir) / INDEX_NAME
    try:
        index = read_bookkeeping(path)
    except (IsADirectoryError, NotAFileToRead):
        raise DataError(f"{path}: {INDEX_NAME} is not a regular file "
                        f"({not_a_regular_file(path) or 'a special file'}); move it out of the "
                        f"pack folder, then copy the pack's {INDEX_NAME} back or "
                        f"{repack_hint(phase_dir)}") from None
    except FileTooLarge as error:
        raise DataError(f"{path}: {error.size:,} bytes, more than any pack's index "
                        f"(at most {error.limit:,} bytes are read): not an index "
                        f"`fastp2p pack` wrote; {repack_hint(phase_dir)}") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable pack index ({error}); "
                        f"{repack_hint(phase_dir)}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: not a fastp2p pack index; {repack_hint(phase_dir)}")
    version = index.get("version")
    if not _is_int(version) or version != VERSION:     # 2.0 equals 2 in Python
        if _is_int(version, VERSION + 1):
            raise DataError(f"{path}: pack format version {version}, written by a newer fastp2p "
                            f"(this one reads version {VERSION}); upgrade fastp2p to read it")
        raise DataError(f"{path}: pack format version {version!r}, this fastp2p reads version "
                        f"{VERSION}; {repack_hint(phase_dir, index)}")
    problem = _schema_problem(index)
    if problem:
        raise DataError(f"{path}: {problem}; {repack_hint(phase_dir, index)}")
    return index


def _is_int(value, low=0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def is_plain_file_name(name) -> bool:
    """A file name without any folder part: it can only name a file inside the pack folder; and
    printable, as messages show it (pack writes shard-NNNNN.u8 and gray-NNNNN.u8)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and name.isprintable() and Path(name).name == name)


def is_skipped_list(items) -> bool:
    """Whether ``items`` is a list of [file, why] pairs of strings, as pack records the files
    --skip-bad left out."""
    return isinstance(items, list) and all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)
        for item in items)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _schema_problem(index: dict) -> str | None:
    """What is wrong with a pack index, naming the field; None if it fits the schema."""
    for field in ("load_size", "height", "width", "channels", "count", "pairs_per_shard"):
        if not _is_int(index.get(field), 1):
            return f"field {field!r} must be an integer >= 1, got {index.get(field)!r}"
    for field in ("preprocess", "dataroot"):
        if not isinstance(index.get(field), str):
            return f"field {field!r} must be a string, got {index.get(field)!r}"
    if index["load_size"] > MAX_LOAD_SIZE:
        return f"field 'load_size' must be <= {MAX_LOAD_SIZE}, got {index['load_size']}"
    # what `fastp2p pack` writes: halves resized to load_size x load_size, RGB. The shard layout
    # and the crops read the stored height and width, so any other value would read pixels
    # that are not there.
    if not index["height"] == index["width"] == index["load_size"]:
        return (f"not a fastp2p pack index: height {index['height']}, width {index['width']} "
                f"and load_size {index['load_size']} must be equal (pack stores halves of "
                "load_size x load_size)")
    if index["channels"] != 3:
        return f"not a fastp2p pack index: channels must be 3, got {index['channels']}"
    if index["preprocess"] != "resize_and_crop":
        return (f"not a fastp2p pack index: preprocess must be 'resize_and_crop', got "
                f"{index['preprocess']!r}")
    shards = index.get("shards")
    if not isinstance(shards, list) or not shards:
        return "field 'shards' must be a non-empty list"
    for number, shard in enumerate(shards):
        where = f"shards[{number}]"
        if not isinstance(shard, dict):
            return f"{where} must be an object"
        if not is_plain_file_name(shard.get("file")):
            return (f"{where}.file must be a plain file name inside the pack folder, got "
                    f"{shard.get('file')!r}")
        if not _is_int(shard.get("count")):
            return f"{where}.count must be an integer >= 0, got {shard.get('count')!r}"
        if not isinstance(shard.get("sha256"), str) or not _SHA256.match(shard["sha256"]):
            return f"{where}.sha256 must be 64 hexadecimal digits"
        if not _is_int(shard.get("crc32")) or shard["crc32"] >= 1 << 32:
            return f"{where}.crc32 must be an unsigned 32-bit integer, got {shard.get('crc32')!r}"
        if not is_skipped_list(shard.get("skipped", [])):
            return f"{where}.skipped must be a list of [file, why] pairs of strings"
    if not is_skipped_list(index.get("skipped", [])):
        return "field 'skipped' must be a list of [file, why] pairs of strings"
    if not isinstance(index.get("gray", False), bool):
        return f"field 'gray' must be true or false, got {index.get('gray')!r}"
    if index.get("gray"):
        for number, shard in enumerate(shards):
            where = f"shards[{number}]"
            gray_file = shard.get("gray_file")
            if not is_plain_file_name(gray_file) or gray_file == shard["file"]:
                return (f"{where}.gray_file must be a plain file name inside the pack folder, "
                        f"other than its shard's, got {gray_file!r}")
            if not isinstance(shard.get("gray_sha256"), str) or not _SHA256.match(
                    shard["gray_sha256"]):
                return f"{where}.gray_sha256 must be 64 hexadecimal digits"
            if not _is_int(shard.get("gray_crc32")) or shard["gray_crc32"] >= 1 << 32:
                return (f"{where}.gray_crc32 must be an unsigned 32-bit integer, got "
                        f"{shard.get('gray_crc32')!r}")
    sources = index.get("sources")
    if not isinstance(sources, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            for pair in sources):
        return "field 'sources' must be a list of [A, B] file name pairs"
    if sum(shard["count"] for shard in shards) != index["count"] or len(sources) != index["count"]:
        return (f"field 'count' ({index['count']}) disagrees with the shards' counts "
                f"({sum(shard['count'] for shard in shards)}) or the sources ({len(sources)})")
    return None


def check_shard_size(path: Path, count: int, shape: tuple, index: dict) -> None:
    expected = count * math.prod(shape)  # Python ints: numpy's int64 would wrap
    actual = path.stat().st_size if path.is_file() else None
    if actual is None:
        what = not_a_regular_file(path)
        if what:    # pack writes no shard over it: it is to be moved out first
            raise DataError(f"{path}: shard is not a regular file ({what}); move it out of the "
                            f"pack folder, then {repack_hint(path.parent, index)}")
        raise DataError(f"{path}: shard missing; {repack_hint(path.parent, index)}")
    if actual != expected:
        raise DataError(f"{path}: shard is {actual} bytes, expected {expected} "
                        f"({counted(count, 'pair')} of {'x'.join(map(str, shape))}): truncated "
                        f"or corrupt; {repack_hint(path.parent, index)}")


def lock_file_problem(phase_dir: Path) -> str | None:
    """What makes the pack's lock file (``folder_lock``) one a training refuses to read the pack
    by: a symbolic link, a FIFO, a device or a folder at its name (``open_plain_file``'s
    refusal, as the training words it); None otherwise (no lock file is none)."""
    try:
        os.close(open_plain_file(Path(phase_dir) / LOCK_NAME, os.O_RDONLY))
    except NotAPlainFile as error:
        return str(error)
    except OSError:
        pass
    return None


def file_checksums(path: Path) -> tuple[str, int]:
    """(SHA-256 hex digest, CRC32) of a file, in one read."""
    digest, crc = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
            crc = zlib.crc32(block, crc)
    return digest.hexdigest(), crc


def bad_shard_files(phase_dir: Path, index: dict, progress: bool = False):
    """Check every shard file's size and both checksums (SHA-256, and the CRC32 that training
    checks) against ``index`` (read_index's), going on past a bad one: yields (shard number,
    one line naming the file, what is wrong and what to do) for each bad file, a shard and its
    gray file each."""
    phase_dir = Path(phase_dir)
    shards = enumerate(index["shards"])
    if progress:
        shards = stderr_bar(shards, total=len(index["shards"]),
                            desc=f"verify {phase_dir.name}", unit="shard")
    for number, shard in shards:
        for prefix, shape in stored_files(index):
            path = phase_dir / shard[prefix + "file"]
            try:
                check_shard_size(path, shard["count"], shape, index)
                if file_checksums(path) != (shard[prefix + "sha256"], shard[prefix + "crc32"]):
                    yield number, (f"{path}: checksum does not match the index: corrupt; "
                                   f"{repack_hint(phase_dir, index)}")
            except DataError as error:
                yield number, str(error)
            except OSError as error:    # a shard that cannot be read, say
                yield number, _unreadable_shard(path, error, phase_dir, index)


def _unreadable_shard(path: Path, error: OSError, phase_dir: Path, index: dict) -> str:
    """One line for shard ``path`` that --verify could not read: its errno's words and what
    that errno needs (``read_error_advice``): a shard gone since it was found can also be
    packed again; an errno of no known cause is its strerror alone."""
    line = f"{error.filename or path}: cannot read it ({error.strerror or error})"
    advice = read_error_advice(error)
    if error.errno == errno.ENOENT:
        return f"{line}; {advice}, or {repack_hint(phase_dir, index)}"
    return f"{line}; {advice}, then check it again" if advice else line


def verify_pack(phase_dir: Path, progress: bool = False) -> dict:
    """Check every shard's size and both checksums against the index; returns the index, or
    raises DataError naming the first bad shard file."""
    index = read_index(phase_dir)
    for _, problem in bad_shard_files(phase_dir, index, progress):
        raise DataError(problem)
    return index


def refuse_preprocess(phase_dir: Path, stored: int, mode: str) -> None:
    """DataError unless ``mode`` is resize_and_crop: pairs are stored (``stored`` pixels a side)
    as that mode sees them after its resize; any other would need the original pixels (crop,
    none) or per-image sizes (scale_width*)."""
    if mode != "resize_and_crop":
        raise DataError(f"{phase_dir}: packed pairs were resized to {stored}x{stored} at pack "
                        f"time, which only --preprocess resize_and_crop expects (not {mode}); "
                        "point --dataroot at the image folders instead")


def refuse_preprocess_of_options(args) -> None:
    """``refuse_preprocess`` for the options' --dataroot and --phase when they name a pack
    (none, or empty, for the embedded dataset): the commands ask it before checks of the image size
    that --preprocess would give, which a pack cannot give anyway."""
    if not args.dataroot or args.preprocess == "resize_and_crop":
        return
    phase_dir = Path(args.dataroot) / args.phase
    if not is_packed(phase_dir):
        return
    try:
        stored = read_index(phase_dir)["width"]
    except DataError:   # a damaged index: reading the dataset names it (exit 1, as without this)
        return
    refuse_preprocess(phase_dir, stored, args.preprocess)
