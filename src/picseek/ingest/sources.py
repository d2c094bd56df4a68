"""Row sources: metadata files and URL lists read into plain dict rows, and the choice of a column among them.

One reader per format (JSON, JSON Lines, CSV/TSV, Parquet, plain lists of URLs) and one dispatcher,
`read_rows`, that picks the reader from the file's extension or, failing that, from its first bytes. Every
reader yields `dict` rows keyed by column name. A file that cannot be read raises `UsageError` with the file
and, where the format has them, the line (or row) that is wrong.

`pick_column` is the one way a column is chosen (the URLs of a URL list, the paths of a Spark input list, the
join column of a metadata import, the image and caption columns of a training table): the one asked for, else
the first usual name present, else the first column whose cells look right.
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import UsageError, one_line

FORMATS = ("json", "jsonl", "csv", "parquet", "urls")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
               ".parquet": "parquet", ".pq": "parquet", ".txt": "urls", ".lst": "urls"}
# an object whose rows sit under one of these keys: {"results": [...]} (APIs), {"data": [...]}, ...
_LIST_KEYS = ("results", "data", "items", "images", "photos", "rows", "records")
_DELIMITERS = (",", "\t", ";", "|")
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024


def detect_format(path: str | os.PathLike) -> str:
    """The format of a file: by extension, else by content (Parquet magic, a JSON opening, a URL per line,
    otherwise delimited text). Binary files that are none of these are refused."""
    p = Path(path)
    fmt = _EXTENSIONS.get(p.suffix.lower())
    if fmt:
        return fmt
    head = _head(p)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if b"\0" in head:
        raise UsageError(f"{p}: unknown format (binary data): expected JSON, JSON Lines, CSV/TSV or Parquet")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "json"
    if text.startswith("{"):
        first = text.split("\n", 1)[0].strip()
        return "jsonl" if _is_json_object(first) and "\n" in text.strip() else "json"
    if text.lower().startswith(("http://", "https://")):
        return "urls"
    return "csv"


def read_rows(path: str | os.PathLike, fmt: str | None = None) -> Iterator[dict]:
    """Rows of a metadata file or URL list, in file order. `fmt` forces a format (one of FORMATS)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"file not found: {path}")
    fmt = fmt or detect_format(p)
    readers = {"json": read_json, "jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet,
               "urls": read_url_lines}
    if fmt not in readers:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return readers[fmt](p)


# ---------------------------------------------------------------------------------------------- readers


def read_json(path: Path) -> Iterator[dict]:
    """A JSON array of objects, or an object that holds one under results/data/items/images/photos/rows/records.
    A .json file that turns out to hold one object per line is read as JSON Lines."""
    text = _text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            yield from read_jsonl(path)
            return
        raise UsageError(f"{path} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    items = _json_items(doc, path)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UsageError(f"{path}: item {i} is {_kind(item)}, not an object (expected one object per image)")
        yield item


def read_jsonl(path: Path) -> Iterator[dict]:
    """JSON Lines: one object per line; blank lines are skipped."""
    for lineno, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise UsageError(f"{path} line {lineno}: {_kind(item)}, not an object")
        yield item


def read_csv(path: Path) -> Iterator[dict]:
    """Delimited text with a header row: comma, tab, semicolon or pipe (whichever the header uses most);
    UTF-8 with or without a byte-order mark; quoted fields may span lines. A row with more cells than the
    header is an error that names its line; missing trailing cells are empty."""
    delimiter = _sniff_delimiter(_head(path).decode("utf-8", errors="replace"))
    reader = csv.reader(_lines(path), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise UsageError(f"{path}: empty file or no header row (expected column names on the first line)")
        names = _column_names(header)
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                raise UsageError(f"{path} line {reader.line_num}: {len(cells)} cells but the header has "
                                 f"{len(names)} columns (a stray {_show(delimiter)} or quote?)")
            yield dict(zip(names, cells))
    except csv.Error as exc:
        raise UsageError(f"{path} line {reader.line_num}: malformed CSV: {exc}") from None


def read_parquet(path: Path) -> Iterator[dict]:
    """A Parquet file, read a record batch at a time (needs pyarrow: pip install 'picseek[parquet]')."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{path}: reading Parquet needs pyarrow: pip install 'picseek[parquet]'") from None
    row = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=4096):
            for item in batch.to_pylist():
                row += 1
                yield item
    except (pa.ArrowException, OSError) as exc:
        where = f" after row {row}" if row else ""
        raise UsageError(f"{path}: not a readable Parquet file{where}: {one_line(exc)}") from None


def read_url_lines(path: Path) -> Iterator[dict]:
    """Plain text, one URL per line, as rows {"url": ...}; blank lines and lines starting with # are skipped."""
    for line in _lines(path):
        url = line.strip()
        if url and not url.startswith("#"):
            yield {"url": url}


# ---------------------------------------------------------------------------------------------- columns


def normalize_name(column: str) -> str:
    """A column name as matched: lower case, runs of spaces and dashes as `_` ("Image URL" -> "image_url")."""
    return re.sub(r"[\s\-]+", "_", str(column).strip().lower())


def column_names(rows: Iterable[Mapping], key: Callable[[str], str] = normalize_name) -> dict[str, str]:
    """key(name) -> the column as written, over all `rows` (JSON rows may differ in their keys); the first
    spelling of a name wins."""
    out: dict[str, str] = {}
    for r in rows:
        for k in r:
            out.setdefault(key(k), k)
    return out


def pick_column(rows: Sequence[Mapping], asked: str | None, candidates: Iterable[str] = (), *,
                looks_right: Callable[[str], bool] | None = None, key: Callable[[str], str] = normalize_name,
                header_rows: int | None = None, exact: bool = False, source: object = "",
                unknown: str = "no column {asked!r}; its columns: {columns}",
                not_found: str = "no such column (looked for {candidates}; columns: {columns})") -> str:
    """The column of `rows` to read, as written in the rows:
    - `asked` (matched through `key`, or as written with `exact`), else UsageError(`unknown`);
    - else the first of `candidates` (names as `key` gives them) that is a column;
    - else, with `looks_right`, the first column whose non-empty cells among the first 20 rows all pass it (and
      that has one);
    - else UsageError(`not_found`).
    The column names come from the first `header_rows` rows (None: all). The messages are format strings with
    {source}, {asked}, {columns} (the columns as written, comma-separated) and {candidates}."""
    header = rows if header_rows is None else rows[:header_rows]
    columns = column_names(header, key)
    candidates = tuple(candidates)

    def error(template: str) -> UsageError:
        return UsageError(template.format(source=source, asked=asked, columns=", ".join(map(str, columns.values())),
                                          candidates=", ".join(candidates)))

    if asked is not None:
        if exact:
            found = asked if any(asked in r for r in header) else None
        else:
            found = columns.get(key(asked))
        if found is None:
            raise error(unknown)
        return found
    for name in candidates:
        if name in columns:
            return columns[name]
    if looks_right is not None:
        for col in columns.values():
            cells = [str(r.get(col) or "") for r in rows[:20]]
            if any(cells) and all(looks_right(c) for c in cells if c):
                return col
    raise error(not_found)


# ---------------------------------------------------------------------------------------------- helpers


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, data, exc) from None


def _lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (a leading byte-order mark dropped, line ends kept), decoded one line at a
    time so that a byte that is not UTF-8 becomes an error that names its line."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(f"{path} line {lineno}: not UTF-8 text ({exc.reason}); save the file as UTF-8") \
                    from None


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> UsageError:
    line = data.count(b"\n", 0, exc.start) + 1
    return UsageError(f"{path} line {line}: not UTF-8 text ({exc.reason}); save the file as UTF-8")


def _json_items(doc: object, path: Path) -> list:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in _LIST_KEYS:
            if isinstance(doc.get(key), list):
                return doc[key]
        lists = [k for k, v in doc.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1:
            return doc[lists[0]]
    raise UsageError(f"{path}: expected a JSON array of objects, or an object with the rows under one of "
                     f"{', '.join(_LIST_KEYS)}; found {_kind(doc)}")


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _sniff_delimiter(sample: str) -> str:
    header = sample.split("\n", 1)[0]
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column_names(header: list[str]) -> list[str]:
    names, seen = [], set()
    for i, h in enumerate(header):
        name = h.strip() or f"column_{i + 1}"
        while name in seen:
            name += "_"
        seen.add(name)
        names.append(name)
    return names


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _show(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[delimiter]

