"""The OpenAPI 3.1 document of /api/v1, built from the routing table, the operations'
parameter and body specifications (bot/api/specs.py) and the configuration (states,
categories, areas and actions as enums). Response schemas are closed
(additionalProperties false, every property required) so a client — or schemathesis —
can hold every answer to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.api.errors import CODES
from bot.api.inputs import MAX_ROW_ID, NUMBER_PATTERN, TEXT_PATTERN, Body, Param
from bot.api.keys import ApiState
from bot.api.specs import ACTION, BULK_DISPATCH, COMMENT, MAX_LABEL_CHARS, MERGE, PART, SUPERVISE
from bot.casework.context import Casework
from bot.casework.countdown import CLOCK_LABELS, LEVEL_LABELS

VERSION = "1.0.0"
JSON = "application/json"

STRING: dict[str, Any] = {"type": "string"}
OPTIONAL_STRING: dict[str, Any] = {"type": ["string", "null"]}
INTEGER: dict[str, Any] = {"type": "integer"}
OPTIONAL_INTEGER: dict[str, Any] = {"type": ["integer", "null"]}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
OPTIONAL_NUMBER: dict[str, Any] = {"type": ["number", "null"]}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
OPTIONAL_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}


def closed(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": list(properties),
                              "properties": properties}
    if description:
        schema["description"] = description
    return schema


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def schemas() -> dict[str, Any]:
    code_name = closed({"code": STRING, "name": STRING})
    summary = {
        "number": {"type": "string", "pattern": NUMBER_PATTERN},
        "appeal_type": STRING,
        "category": STRING,
        "category_label": STRING,
        "urgency": STRING,
        "status": STRING,
        "status_label": STRING,
        "status_kind": OPTIONAL_STRING,
        "open": BOOLEAN,
        "area_code": OPTIONAL_STRING,
        "area_name": OPTIONAL_STRING,
        "department": OPTIONAL_STRING,
        "department_name": OPTIONAL_STRING,
        "co_departments": array(ref("Department")),
        "created_at": TIME,
        "updated_at": TIME,
        "response_due_at": OPTIONAL_TIME,
        "closure_due_at": OPTIONAL_TIME,
        "accepted_at": OPTIONAL_TIME,
        "resolved_at": OPTIONAL_TIME,
        "closed_at": OPTIONAL_TIME,
        "overdue": BOOLEAN,
        "escalation_level": INTEGER,
        "reopen_count": INTEGER,
        "handler": optional(ref("StaffRef")),
        "countdown": ref("Countdown"),
        "excerpt": {"type": "string", "description": "The report's first characters, personal numbers masked"},
    }
    detail = {
        **summary,
        "description": {"type": "string", "description": "The report as the resident wrote it (viewing is audited)"},
        "address": OPTIONAL_STRING,
        "lat": OPTIONAL_NUMBER,
        "lng": OPTIONAL_NUMBER,
        "confidence": OPTIONAL_NUMBER,
        "keywords": array(STRING),
        "handler_label": OPTIONAL_STRING,
        "timeline": array(ref("TimelineEntry")),
        "attachments": array(ref("Attachment")),
        "parts": array(ref("Part")),
        "ratings": array(ref("Rating")),
        "related": closed({"duplicate_of": optional(ref("TicketRef")), "duplicates": array(ref("TicketRef")),
                           "repeat_of": optional(ref("TicketRef")), "repeats": array(ref("TicketRef"))}),
        "polygon": optional({**array({**array({"type": "number"}), "minItems": 2, "maxItems": 2}),
                             "description": "The grid's boundary, [[lng, lat], …]"}),
        "actions": array(ref("ActionLabel")),
        "part_actions": {**array(ref("PartAction")),
                         "description": "The joint-dispatch part actions the caller may take now (POST parts)"},
        "remarks": {**array(ref("ActionLabel")),
                    "description": "Of comment, supervise, attach: those the caller may add (POST comments, supervisions, photos)"},
    }
    action_result = {"number": STRING, "from_status": STRING, "to_status": STRING, "to_status_label": STRING,
                     "category": STRING, "area_code": OPTIONAL_STRING, "recategorized": BOOLEAN, "notices": INTEGER}
    staff = {"id": INTEGER, "login": OPTIONAL_STRING, "name": STRING, "role": STRING, "role_label": STRING,
             "area_code": OPTIONAL_STRING, "area_name": OPTIONAL_STRING, "department": OPTIONAL_STRING,
             "department_name": OPTIONAL_STRING, "wechat_bound": BOOLEAN}
    return {
        "ErrorDetail": closed({"code": {"type": "string", "enum": list(CODES)},
                               "message": {"type": "string", "minLength": 1,
                                           "description": "Chinese, shown to people as is"}}),
        "Error": closed({"error": ref("ErrorDetail")}, "Every error answer has this shape (the code by status: Error400 …)"),
        "Department": code_name,
        "StaffRef": closed({"id": INTEGER, "login": OPTIONAL_STRING, "name": STRING, "label": STRING}),
        "Countdown": closed({"level": {"type": "string", "enum": list(LEVEL_LABELS)}, "label": STRING,
                             "clock": {"type": ["string", "null"], "enum": [*CLOCK_LABELS, None]},
                             "due_at": OPTIONAL_TIME, "seconds_left": OPTIONAL_INTEGER, "text": STRING},
                            "The deadline as it stands: the response clock until accepted, then closure"),
        "TicketSummary": closed(summary),
        "TicketDetail": closed(detail),
        "TicketRef": closed({"number": STRING, "status": STRING, "status_label": STRING}),
        "TicketPage": closed({"queue": STRING, "queue_label": STRING, "total": INTEGER, "page": INTEGER,
                              "page_size": INTEGER, "pages": INTEGER, "tickets": array(ref("TicketSummary"))}),
        "Change": closed({"field": STRING, "old_value": OPTIONAL_STRING, "new_value": OPTIONAL_STRING}),
        "TimelineEntry": closed({"id": INTEGER, "at": TIME, "action": STRING, "action_label": STRING,
                                 "from_status": OPTIONAL_STRING, "to_status": OPTIONAL_STRING,
                                 "actor": {"type": "string", "description": "staff:<id>, resident or system"},
                                 "actor_label": STRING, "note": OPTIONAL_STRING,
                                 "internal": {"type": "boolean", "description": "A staff-only note"},
                                 "changes": array(ref("Change"))}),
        "Attachment": closed({"id": INTEGER, "kind": STRING, "label": OPTIONAL_STRING, "created_at": TIME,
                              "added_by": OPTIONAL_STRING, "added_by_label": STRING, "lat": OPTIONAL_NUMBER,
                              "lng": OPTIONAL_NUMBER,
                              "photo": {"type": ["string", "null"], "description": "Path of the photo (GET), if stored"}}),
        "Part": closed({"department": STRING, "department_name": STRING, "status": STRING, "status_label": STRING,
                        "handler": optional(ref("StaffRef")), "note": OPTIONAL_STRING, "created_at": TIME,
                        "accepted_at": OPTIONAL_TIME, "done_at": OPTIONAL_TIME}),
        "PartAction": closed({"department": {"type": "string", "description": "The part's department (its code)"},
                              "department_name": STRING,
                              "word": {"type": "string", "description": "The part action, as POST parts takes it"},
                              "label": STRING}),
        "PartResult": closed({"number": STRING, "department": STRING, "department_name": STRING,
                              "from_status": {"type": "string", "description": "A part state (GET /workflow part_states)"},
                              "from_status_label": STRING, "to_status": STRING, "to_status_label": STRING,
                              "all_done": {"type": "boolean",
                                           "description": "Every part of the ticket is done: the lead may close it"},
                              "notices": {"type": "integer",
                                          "description": "Notices queued (the lead's handler told all parts are done)"}}),
        "Rating": closed({"round": INTEGER, "channel": OPTIONAL_STRING, "satisfaction": OPTIONAL_STRING,
                          "resolution": OPTIONAL_STRING, "comment": OPTIONAL_STRING, "asked_at": TIME,
                          "answered_at": OPTIONAL_TIME}),
        "ActionLabel": closed({"action": STRING, "label": STRING}),
        "ActionResult": closed(action_result),
        "BulkItem": closed({"number": STRING, "ok": BOOLEAN, "result": optional(ref("ActionResult")),
                            "error": optional(ref("ErrorDetail"))}),
        "BulkResult": closed({"action": STRING, "succeeded": INTEGER, "failed": INTEGER,
                              "results": array(ref("BulkItem"))}),
        "Added": closed({"number": STRING, "event_id": INTEGER, "notices": INTEGER}),
        "Queue": closed({"code": STRING, "label": STRING, "open_only": BOOLEAN, "count": INTEGER}),
        "Queues": closed({"queues": array(ref("Queue"))}),
        "Me": closed({**staff, "queues": array(ref("Queue"))}),
        "Categories": closed({
            "categories": array(closed({"code": STRING, "name": STRING, "label": STRING, "group": STRING,
                                        "group_name": STRING, "department": STRING, "department_name": STRING,
                                        "co_departments": array(STRING), "urgency": STRING, "sla_class": STRING})),
            "departments": array(ref("Department")),
            "groups": array(code_name),
            "urgencies": {**array(STRING), "description": "Lowest first"}}),
        "Areas": closed({"areas": array(closed({
            "code": STRING, "name": STRING, "full_name": STRING, "level": STRING, "level_label": STRING,
            "parent_code": OPTIONAL_STRING,
            "center": optional(closed({"lat": OPTIONAL_NUMBER, "lng": OPTIONAL_NUMBER}))}))}),
        "Workflow": closed({
            "initial": STRING, "reroute_action": STRING,
            "states": array(closed({"code": STRING, "label": STRING, "kind": STRING, "open": BOOLEAN,
                                    "sla_clock": STRING})),
            "transitions": array(closed({"action": STRING, "label": STRING, "from": array(STRING), "to": STRING,
                                         "restarts_clock": BOOLEAN})),
            "part_states": array(closed({"code": STRING, "label": STRING, "done": BOOLEAN}))}),
    }


# ---------------------------------------------------------------- operations

ERROR_TEXT = {
    400: "Bad input: JSON, a parameter or a value the ticket domain does not take",
    401: "No token, an unknown or revoked one, or a disabled account",
    403: "The caller's rights do not allow it (the refusal is audited)",
    404: "No such ticket (or photo)",
    408: "The body did not arrive in time",
    409: "The ticket's (or the part's) state does not allow it now",
    413: "The body is too large",
    415: "The body is not of the operation's media type",
    503: "Too many bodies arriving at once; retry",
}
BODY_ERRORS = (400, 408, 413, 415, 503)


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    success: int = 200
    response: str | None = None  # a schema name (JSON)
    content: dict[str, Any] = field(default_factory=dict)  # other media types of the success response
    headers: dict[str, Any] = field(default_factory=dict)  # headers of the success response
    errors: tuple[int, ...] = ()
    params: str | None = None  # "list" / "export": the query parameters of ApiState
    body: Body | None = None
    upload: bool = False  # a multipart photo
    public: bool = False
    description: str = ""
    links: dict[str, dict[str, str]] = field(default_factory=dict)  # operationId → its parameters from this answer


FIRST_TICKET = {"number": "$response.body#/tickets/0/number"}
SAME_TICKET = {"number": "$request.path.number"}


OPERATIONS: dict[str, Operation] = {
    "openapi": Operation("This document", "Reference", public=True, content={JSON: {"schema": {"type": "object"}}}),
    "me": Operation("The caller: staff member, role, area, queues with counts", "Reference", response="Me"),
    "queues": Operation("The caller's queues with the number of tickets each holds", "Tickets", response="Queues"),
    "tickets": Operation("One page of a queue, most urgent deadline first", "Tickets", response="TicketPage",
                         errors=(400, 404), params="list",
                         links={"ticket": FIRST_TICKET, "action": FIRST_TICKET, "comment": FIRST_TICKET},
                         description="Within what the caller may view (config/rights.toml). Items carry a masked "
                                     "excerpt of the report; GET /tickets/{number} gives the full text."),
    "export": Operation(
        "A queue (with the same filters) as CSV or XLSX", "Tickets", errors=(400, 404), params="export",
        content={"text/csv": {"schema": {"type": "string"}},
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                     {"schema": {"type": "string", "format": "binary"}}},
        headers={"Content-Disposition": {"required": True, "schema": STRING},
                 "X-Export-Rows": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                                   "description": "Rows in the file"}},
        description="Personal numbers in the text masked, no openids; at most console.export_max_rows rows. "
                    "Each export is audited."),
    "bulk_dispatch": Operation("Dispatch (re-route) several tickets", "Tickets", response="BulkResult",
                               errors=BODY_ERRORS, body=BULK_DISPATCH,
                               description="Each ticket goes through the workflow's reroute_action on its own; "
                                           "per-ticket refusals and conflicts are in the results (200)."),
    "ticket": Operation("One ticket with its timeline, attachments, parts, ratings and the caller's actions",
                        "Tickets", response="TicketDetail", errors=(403, 404),
                        links={"photo": {**SAME_TICKET, "attachment_id": "$response.body#/attachments/0/id"},
                               "action": SAME_TICKET, "part": SAME_TICKET, "comment": SAME_TICKET,
                               "supervise": SAME_TICKET, "merge": SAME_TICKET},
                        description="Every view is audited; a refusal too."),
    "action": Operation("Take a workflow action", "Tickets", response="ActionResult",
                        errors=(*BODY_ERRORS, 403, 404, 409), body=ACTION),
    "part": Operation("联合派单: work a co-department's part of a joint ticket", "Tickets", response="PartResult",
                      errors=(*BODY_ERRORS, 403, 404, 409), body=PART,
                      description="A liaison of the part's department accepts or finishes it (config/rights.toml, "
                                  "scope part); the lead cannot take the workflow's blocked actions (办结) until every "
                                  "part is done. A department with no part of the ticket, or an unknown action, is a "
                                  "400; a part in a state the action does not leave from is a 409. The detail's "
                                  "part_actions lists what the caller may take."),
    "comment": Operation("Add an internal note", "Tickets", success=201, response="Added",
                         errors=(*BODY_ERRORS, 403, 404), body=COMMENT),
    "supervise": Operation("督办: tell the handler to hurry", "Tickets", success=201, response="Added",
                           errors=(*BODY_ERRORS, 403, 404), body=SUPERVISE),
    "attach": Operation("Add a photo (JPEG, PNG or GIF)", "Tickets", success=201, response="Added",
                        errors=(*BODY_ERRORS, 403, 404), upload=True),
    "photo": Operation("A photo of the ticket", "Tickets", errors=(403, 404),
                       content={kind: {"schema": {"type": "string", "format": "binary"}}
                                for kind in ("image/jpeg", "image/png", "image/gif")},
                       description="Viewing is audited."),
    "merge": Operation("合并重复: close this ticket into another open one", "Tickets", response="ActionResult",
                       errors=(*BODY_ERRORS, 403, 404, 409), body=MERGE),
    "categories": Operation("The taxonomy: categories, departments, groups, urgencies", "Reference",
                            response="Categories"),
    "areas": Operation("The grid tree", "Reference", response="Areas"),
    "workflow": Operation("Ticket states and transitions (actions)", "Reference", response="Workflow"),
}

PATH_PARAMETERS = {
    "number": {"name": "number", "in": "path", "required": True, "description": "Ticket number",
               "schema": {"type": "string", "pattern": NUMBER_PATTERN}},
    "attachment_id": {"name": "attachment_id", "in": "path", "required": True, "description": "Attachment id",
                      "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ROW_ID}},
}


def error_schemas() -> dict[str, Any]:
    """Error400, Error401 …: the error answer of one status, with the codes it may carry."""
    found = {}
    for status in ERROR_TEXT:
        codes = [code for code, of in CODES.items() if of == status]
        found[f"Error{status}"] = closed({"error": closed({
            "code": {"type": "string", "enum": codes},
            "message": {"type": "string", "minLength": 1, "description": "Chinese, shown to people as is"}})})
    return found


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ERROR_TEXT[status],
                                "content": {JSON: {"schema": ref(f"Error{status}")}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "pattern": "^Bearer "}}}
    return response


def _query(params: tuple[Param, ...], case: Casework) -> list[dict[str, Any]]:
    return [{"name": p.name, "in": "query", "required": False, "description": p.description,
             "schema": p.schema(case)} for p in params]


def _operation(name: str, path: str, case: Casework, state: ApiState) -> dict[str, Any]:
    spec = OPERATIONS[name]
    success: dict[str, Any] = {"description": spec.summary}
    if spec.response:
        success["content"] = {JSON: {"schema": ref(spec.response)}}
    if spec.content:
        success["content"] = dict(spec.content)
    if spec.headers:
        success["headers"] = dict(spec.headers)
    if spec.links:
        success["links"] = {target: {"operationId": target, "parameters": dict(parameters)}
                            for target, parameters in spec.links.items()}
    responses: dict[str, Any] = {str(spec.success): success}
    for status in sorted({*spec.errors, *(() if spec.public else (401,))}):
        responses[str(status)] = _error(status)
    operation: dict[str, Any] = {"operationId": name, "summary": spec.summary, "tags": [spec.tag],
                                 "responses": responses}
    if spec.description:
        operation["description"] = spec.description
    if spec.public:
        operation["security"] = []
    parameters = [PATH_PARAMETERS[p] for p in PATH_PARAMETERS if "{" + p + "}" in path]
    if spec.params:
        parameters += _query(state.list_params if spec.params == "list" else state.export_params, case)
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        body_schema = spec.body.schema(case)
        operation["requestBody"] = {"required": True, "description": spec.body.description,
                                    "content": {JSON: {"schema": body_schema, "example": spec.body.example}}}
    if spec.upload:
        operation["requestBody"] = {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary", "description": "The photo: JPEG, PNG or GIF, at most 8 MB"},
                "label": {"type": "string", "maxLength": MAX_LABEL_CHARS, "pattern": TEXT_PATTERN,
                          "description": "What the photo shows"}}},
            "encoding": {"file": {"contentType": "image/jpeg, image/png, image/gif"}}}}}
    return operation


def build_document(case: Casework, state: ApiState, base: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for name, method, path in state.operations:
        paths.setdefault(path, {})[method.lower()] = _operation(name, path, case, state)
    return {
        "openapi": "3.1.0",
        "info": {"title": "minyi staff API", "version": VERSION,
                 "description": "Queues and tickets of the minyi 民意 service for staff systems, with a bearer "
                                "token (`minyi token create --staff LOGIN`) that has exactly its staff member's "
                                "rights. Errors are {\"error\": {\"code\", \"message\"}}, the message in Chinese. "
                                "Times are ISO 8601 in China time. See docs/api.md."},
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "tags": [{"name": "Tickets"}, {"name": "Reference"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "minyi token create --staff LOGIN"}},
            "schemas": {**schemas(), **error_schemas()},
        },
    }
