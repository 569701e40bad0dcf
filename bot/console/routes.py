"""The console's routing table, with named routes (templates and redirects use the names)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bot.console import action_views, admin_views, auth, export_views, queue_views, ticket_views


def setup_routes(app: web.Application, static: Path) -> None:
    r = app.router
    login = r.add_resource("/login", name="login")
    login.add_route("GET", auth.login_form)
    login.add_route("POST", auth.login_submit)
    r.add_post("/logout", auth.logout, name="logout")
    r.add_get("/", queue_views.home, name="home")
    r.add_get("/q/{queue}", queue_views.queue_page, name="queue")
    r.add_get("/q/{queue}/export.{format}", export_views.export, name="export")
    r.add_post("/bulk-dispatch", action_views.bulk_dispatch, name="bulk_dispatch")
    r.add_get("/t/{number}", ticket_views.ticket_page, name="ticket")
    r.add_post("/t/{number}/act", action_views.act, name="act")
    r.add_post("/t/{number}/comment", action_views.comment, name="comment")
    r.add_post("/t/{number}/supervise", action_views.supervise, name="supervise")
    r.add_post("/t/{number}/photo", action_views.photo, name="add_photo")
    r.add_post("/t/{number}/merge", action_views.merge_into, name="merge")
    r.add_post("/t/{number}/part", action_views.part_action, name="part")
    r.add_get("/media/{attachment}", ticket_views.photo, name="photo")
    r.add_get("/admin/staff", admin_views.staff_page, name="admin_staff")
    r.add_post("/admin/staff", admin_views.staff_save, name="admin_staff_save")
    r.add_post("/admin/staff/{login}/password", admin_views.staff_password, name="admin_staff_password")
    r.add_post("/admin/staff/{login}/{change:enable|disable}", admin_views.staff_active, name="admin_staff_active")
    r.add_get("/admin/taxonomy", admin_views.taxonomy_page, name="admin_taxonomy")
    r.add_get("/admin/sla", admin_views.sla_page, name="admin_sla")
    r.add_get("/admin/audit", admin_views.audit_page, name="admin_audit")
    r.add_static("/static", static, name="static")
