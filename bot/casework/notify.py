"""Who is told what when a ticket moves: the staff who must act, and the residents."""

from __future__ import annotations

from sqlmodel import col, select

from bot.casework.context import Casework
from storage.models import Ticket


def notify_staff(case: Casework, ticket: Ticket) -> list[dict]:
    """New-ticket notice to the grid worker and department liaison; 特急 also goes
    straight to the district duty staff as a red warning (红色预警, 直报).
    Returns the outbox rows, for create_ticket to insert in one go."""
    taxonomy = case.router.taxonomy
    area_name = case.areas.full_name(ticket.area_code) or "未定位"
    summary = ticket.description if len(ticket.description) <= 60 else ticket.description[:60] + "…"
    category = taxonomy.label(ticket.category)
    staff = case.org.staff
    rows: list[dict] = []
    recipients: dict[str, str] = {}
    if ticket.status == "triage":
        for person in staff:
            if person.role == "dispatcher" and person.openid:
                recipients[person.openid] = "待分拨"
    else:
        for person in staff:
            if not person.openid:
                continue
            if person.role == "grid_worker" and person.area_code == ticket.area_code:
                recipients[person.openid] = "网格"
            elif person.role == "liaison" and person.department == ticket.department:
                recipients[person.openid] = "部门"
    for openid, why in recipients.items():
        rows.append(case.outbox.text_row(openid,
                     f"【新工单·{why}】{ticket.number}\n类型：{ticket.appeal_type}\n类别：{category}\n"
                     f"紧急程度：{ticket.urgency}\n"
                     f"位置：{area_name}\n内容：{summary}\n请在时限内接单处理。",
                     title=f"新工单 {ticket.number}"))
    if ticket.urgency == "特急":
        district_codes = {n.code for n in case.areas.ancestors(ticket.area_code) if n.level in ("district", "city")}
        for person in staff:
            if person.openid and person.role in ("dispatcher", "supervisor") and (
                    not district_codes or person.area_code in district_codes):
                rows.append(case.outbox.text_row(person.openid,
                             f"【红色预警·直报】{ticket.number}\n{category}\n位置：{area_name}\n内容：{summary}\n"
                             f"请立即处置并关注。", title=f"红色预警 {ticket.number}"))
    return rows


async def resident_updates(case: Casework, session, ticket: Ticket, status: str,  # type: ignore[no-untyped-def]
                            note: str | None) -> list[dict]:
    """A status message to the resident, and to the residents whose reports were linked
    to this ticket as duplicates (they were told it covers theirs)."""
    label = case.workflow.label(status)
    if ticket.department:
        label += f"（{case.router.taxonomy.department_name(ticket.department)}）"
    linked = (await session.exec(select(Ticket.openid, Ticket.number)
                                 .where(col(Ticket.duplicate_of_id) == ticket.id))).all()
    said = f"\n处理说明：{note}" if note else ""
    rows = [case.outbox.text_row(ticket.openid, f"您的诉求 {ticket.number} 状态更新：{label}。{said}",
                                     title=f"工单 {ticket.number} {label}")]
    for openid, own_number in linked:
        if openid != ticket.openid:
            rows.append(case.outbox.text_row(
                openid, f"您反映的问题（{own_number}）与其他群众反映的同一问题一并办理，状态更新：{label}。{said}",
                title=f"工单 {own_number} {label}"))  # never the other resident's number
    return rows
