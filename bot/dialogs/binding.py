"""Binding a home grid: by a location message, or by choosing community then grid."""

from __future__ import annotations

from bot.dialogs import texts
from bot.dialogs.choices import parse_choice
from bot.dialogs.session import Session
from bot.wechat.inbound import Inbound


def _numbered(names: list[str]) -> str:
    return "\n".join(f"{i}. {name}" for i, name in enumerate(names, 1))


def _choice(text: str, options: list[str]) -> str | None:
    number = parse_choice(text, len(options))
    return options[number - 1] if number is not None else None


def _community_names(session: Session, codes: list[str]) -> list[str]:
    return [session.services.areas.full_name(code) for code in codes]


def _grid_names(session: Session, codes: list[str]) -> list[str]:
    names = []
    for code in codes:
        grid = session.services.areas.nodes.get(code)
        if grid is None:
            names.append(code)
        else:
            names.append(f"{grid.name}（{'、'.join(grid.places[:2])}）" if grid.places else grid.name)
    return names


def _again(names: list[str]) -> str:
    """Not a number on the list: say so politely and show the list again."""
    return f"{texts.BIND_BAD_CHOICE}\n{_numbered(names)}" if names else texts.BIND_BAD_CHOICE


async def start(msg: Inbound, session: Session) -> str:
    areas = session.services.areas
    communities = sorted(areas.children(None, "community"), key=lambda n: n.code)
    session.goto("choosing_community", options=[c.code for c in communities])
    names = _community_names(session, [c.code for c in communities])
    return texts.BIND_CHOOSE_COMMUNITY.format(options=_numbered(names))


async def choose_community(msg: Inbound, session: Session) -> str:
    options = session.data.get("options", [])
    code = _choice(msg.content, options)
    if code is None:
        return _again(_community_names(session, options))
    areas = session.services.areas
    grids = sorted(areas.children(code, "grid"), key=lambda n: n.code)
    session.goto("choosing_grid", options=[g.code for g in grids])
    return texts.BIND_CHOOSE_GRID.format(options=_numbered(_grid_names(session, [g.code for g in grids])))


async def choose_grid(msg: Inbound, session: Session) -> str:
    options = session.data.get("options", [])
    code = _choice(msg.content, options)
    if code is None:
        return _again(_grid_names(session, options))
    session.resident.home_area_code = code
    session.reset()
    return texts.BIND_DONE.format(area=session.services.areas.full_name(code))


def bind_location(session: Session, lat: float, lng: float) -> str:
    """An idle location message binds the grid there (and is remembered for a report)."""
    code = session.services.areas.locate(lat, lng)
    if code is None:
        return texts.LOCATION_OUTSIDE
    session.resident.home_area_code = code
    session.reset(last_location=[lat, lng], last_location_at=session.now.isoformat())
    return texts.BIND_BY_LOCATION.format(area=session.services.areas.full_name(code))
