"""The appeal taxonomy (config/taxonomy.toml): groups, leaf categories, departments."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

FALLBACK_CATEGORY = "other"


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    group: str
    group_name: str
    department: str
    co_departments: tuple[str, ...]
    urgency: str
    sla_class: str
    keywords: dict[str, float] = field(default_factory=dict)
    negative: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, Category]
    departments: dict[str, str]  # code -> Chinese name
    groups: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> "Taxonomy":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        departments = {d["code"]: d["name"] for d in raw.get("department", [])}
        groups = {g["code"]: g["name"] for g in raw.get("group", [])}
        categories: dict[str, Category] = {}
        for c in raw.get("category", []):
            keywords = {str(k): float(v) for k, v in (c.get("keywords") or {}).items()}
            for synonym in c.get("synonyms", []):
                keywords.setdefault(synonym, 1.0)
            code = c["code"]
            if code in categories:
                raise ValueError(f"duplicate category code {code}")
            for dept in [c["department"], *c.get("co_departments", [])]:
                if dept not in departments:
                    raise ValueError(f"category {code} names unknown department {dept}")
            categories[code] = Category(
                code=code,
                name=c["name"],
                group=c["group"],
                group_name=groups.get(c["group"], c["group"]),
                department=c["department"],
                co_departments=tuple(c.get("co_departments", [])),
                urgency=c.get("urgency", "一般"),
                sla_class=c.get("sla_class", "normal"),
                keywords=keywords,
                negative=tuple(c.get("negative", [])),
                examples=tuple(c.get("examples", [])),
            )
        if FALLBACK_CATEGORY not in categories:
            raise ValueError(f"taxonomy needs the fallback category '{FALLBACK_CATEGORY}'")
        return cls(categories, departments, groups)

    def department_name(self, code: str | None) -> str:
        return self.departments.get(code or "", code or "")

    def label(self, code: str) -> str:
        category = self.categories.get(code)
        return f"{category.group_name}›{category.name}" if category else code
