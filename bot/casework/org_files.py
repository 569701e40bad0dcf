"""Reading organisation files (docs/org.md): the grid tree and the staff, as CSV or TOML.

TOML: `[[area]]` and `[[staff]]` tables, in one file or two. CSV: one kind a file, told
by its header (a staff file has a 工号/login column, an area file 编码/code and
层级/level); headers may be the English field names or their Chinese names. Excel's
UTF-8 (with BOM) and GB18030 CSV are both read.

Each record keeps where it came from, so a validation error names the line and field.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AREA = "area"
STAFF = "staff"

# field → the column names a file may use for it (the first Chinese one is its label).
AREA_FIELDS: dict[str, tuple[str, ...]] = {
    "code": ("code", "编码", "网格编码", "区划编码"),
    "name": ("name", "名称"),
    "level": ("level", "层级", "级别"),
    "parent": ("parent", "parent_code", "上级编码", "上级"),
    "households": ("households", "户数"),
    "center_lat": ("center_lat", "中心纬度", "纬度"),
    "center_lng": ("center_lng", "中心经度", "经度"),
    "places": ("places", "地名"),
    "polygon": ("polygon", "边界"),
}
STAFF_FIELDS: dict[str, tuple[str, ...]] = {
    "login": ("login", "工号"),
    "name": ("name", "姓名"),
    "role": ("role", "角色"),
    "area": ("area", "area_code", "网格", "所属网格", "区域"),
    "department": ("department", "部门"),
    "openid": ("openid", "微信openid", "微信"),
    "active": ("active", "状态"),
}
FIELDS = {AREA: AREA_FIELDS, STAFF: STAFF_FIELDS}
KIND_NAMES = {AREA: "网格节点", STAFF: "工作人员"}
_TOML_TABLE = re.compile(r"^\s*\[\[\s*(\w+)\s*\]\]")


class OrgFileError(ValueError):
    """A file that cannot be read as an organisation file (message in Chinese)."""


@dataclass(frozen=True)
class Record:
    kind: str  # AREA / STAFF
    source: str  # the file name, or 命令行
    line: int  # 0: not from a file line
    index: int  # the record's number of its kind in the source, from 1
    values: dict[str, Any]  # by field name; a field not given is absent

    @property
    def where(self) -> str:
        if self.line:
            return f"{self.source} 第 {self.line} 行"
        if self.source.endswith(".toml"):
            return f"{self.source} 第 {self.index} 个 [[{self.kind}]]"
        return self.source


def field_label(kind: str, name: str) -> str:
    """The Chinese name of a field, e.g. 工号."""
    aliases = FIELDS[kind].get(name, (name,))
    return next((a for a in aliases if not a.isascii()), name)


def read_file(path: Path) -> list[Record]:
    """The records of one CSV or TOML file."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".toml"):
        raise OrgFileError(f"{path.name}：只支持 .csv 和 .toml 文件")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OrgFileError(f"无法读取 {path}：{exc.strerror or exc}") from None
    return read_csv(_decode(data, path.name), path.name) if suffix == ".csv" else read_toml(data, path.name)


def _decode(data: bytes, source: str) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise OrgFileError(f"{source}：无法识别文件编码（请存为 UTF-8）")


# ---------------------------------------------------------------- TOML

def read_toml(data: bytes, source: str) -> list[Record]:
    try:
        raw = tomllib.loads(_decode(data, source))
    except tomllib.TOMLDecodeError as exc:
        raise OrgFileError(f"{source}：TOML 格式错误（{exc}）") from None
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise OrgFileError(f"{source}：不认识的表 {'、'.join(unknown)}（只能有 [[area]] 和 [[staff]]）")
    lines = _table_lines(_decode(data, source))
    records = []
    for kind in (AREA, STAFF):
        items = raw.get(kind, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise OrgFileError(f"{source}：{kind} 应写成 [[{kind}]] 表")
        for index, item in enumerate(items, 1):
            records.append(_toml_record(kind, source, lines.get((kind, index), 0), index, item))
    return records


def _table_lines(text: str) -> dict[tuple[str, int], int]:
    """(kind, n) → the line of the n-th [[kind]] header."""
    counts: dict[str, int] = {}
    lines = {}
    for number, line in enumerate(text.splitlines(), 1):
        found = _TOML_TABLE.match(line)
        if found:
            kind = found.group(1)
            counts[kind] = counts.get(kind, 0) + 1
            lines[(kind, counts[kind])] = number
    return lines


def _toml_record(kind: str, source: str, line: int, index: int, item: dict[str, Any]) -> Record:
    names = {alias: name for name, aliases in FIELDS[kind].items() for alias in aliases}
    unknown = [key for key in item if key not in names]
    if unknown:
        where = f"{source} 第 {line} 行" if line else f"{source} 第 {index} 个 [[{kind}]]"
        raise OrgFileError(f"{where}：不认识的字段 {'、'.join(unknown)}")
    return Record(kind, source, line, index, {names[key]: value for key, value in item.items()})


# ---------------------------------------------------------------- CSV

def read_csv(text: str, source: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise OrgFileError(f"{source}：文件是空的")
    kind, columns = _csv_columns(header, source)
    records: list[Record] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        values = {name: row[i].strip() for i, name in columns.items() if i < len(row) and row[i].strip()}
        given = {name: "" for i, name in columns.items() if i < len(row) and not row[i].strip()}
        records.append(Record(kind, source, reader.line_num, len(records) + 1, {**given, **values}))
    return records


def _csv_columns(header: list[str], source: str) -> tuple[str, dict[int, str]]:
    """The kind of a CSV file and its columns (index → field), from the header."""
    seen = [(i, cell.strip()) for i, cell in enumerate(header) if cell.strip()]
    for kind in (STAFF, AREA):
        names = {alias.lower(): name for name, aliases in FIELDS[kind].items() for alias in aliases}
        columns = {i: names[cell.lower()] for i, cell in seen if cell.lower() in names}
        if _is_kind(kind, set(columns.values())):
            unknown = [cell for i, cell in seen if i not in columns]
            if unknown:
                raise OrgFileError(f"{source} 第 1 行：不认识的列 {'、'.join(unknown)}")
            return kind, columns
    raise OrgFileError(f"{source} 第 1 行：无法识别表头（工作人员表要有「工号」列，网格表要有「编码」和「层级」列）")


def _is_kind(kind: str, fields: set[str]) -> bool:
    return "login" in fields if kind == STAFF else {"code", "level"} <= fields
