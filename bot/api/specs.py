"""What each operation takes: its query parameters and JSON bodies. The views check
requests against these, and the OpenAPI document (bot/api/openapi.py) describes them,
with the codes (states, categories, areas, actions) read from the configuration."""

from __future__ import annotations

from bot.api.inputs import NUMBER_PATTERN, Body, Field, Param
from bot.casework.context import Casework
from bot.casework.queues import MAX_PAGE_SIZE, MAX_SEARCH_CHARS, Queue
from bot.casework.remarks import MAX_NOTE_CHARS

MAX_PAGE = 100_000  # far past any real queue; keeps the SQL offset small
MAX_BULK = 100  # tickets one bulk dispatch takes
MAX_LABEL_CHARS = 300  # a photo's label (Attachment.label)
EXPORT_FORMATS = ("csv", "xlsx")


def _states(case: Casework) -> list[str]:
    return list(case.workflow.states)


def _categories(case: Casework) -> list[str]:
    return list(case.router.taxonomy.categories)


def _urgencies(case: Casework) -> list[str]:
    return list(case.router.urgency.order)


def _areas(case: Casework) -> list[str]:
    return list(case.areas.nodes)


def _actions(case: Casework) -> list[str]:
    return list(case.workflow.transitions)


def _departments(case: Casework) -> list[str]:
    return list(case.router.taxonomy.departments)


def _part_words(case: Casework) -> list[str]:
    return list(case.parts.transitions)


def filter_params(queues: tuple[Queue, ...]) -> tuple[Param, ...]:
    codes = tuple(q.code for q in queues)
    return (
        Param("queue", "code", "Queue code (config/console.toml); default: the caller's first queue. A queue not shown to the "
              "caller's role is a 400.",
              choices=lambda case: codes),
        Param("status", "code", "Only tickets in this state (config/workflow.toml); closed states count too when given", choices=_states),
        Param("category", "code", "Only tickets of this category (config/taxonomy.toml)", choices=_categories),
        Param("urgency", "code", "Only tickets of this urgency", choices=_urgencies),
        Param("area_code", "code", "Only tickets of this node of the grid tree and the nodes under it", choices=_areas),
        Param("created_from", "instant",
              "Created at or after: an ISO 8601 date or date-time, China time without an offset, "
              "year 2000-2099"),
        Param("created_to", "instant",
              "Created at or before (as created_from; a bare date includes that whole day)", end_of_day=True),
        Param("search", "text", "A ticket number, or words of the report or its address", max_length=MAX_SEARCH_CHARS),
    )


def list_params(queues: tuple[Queue, ...], page_size: int) -> tuple[Param, ...]:
    return (*filter_params(queues),
            Param("page", "integer", "Page number, from 1", minimum=1, maximum=MAX_PAGE, default=1),
            Param("page_size", "integer", "Tickets per page", minimum=1, maximum=MAX_PAGE_SIZE,
                  default=page_size))


def export_params(queues: tuple[Queue, ...]) -> tuple[Param, ...]:
    return (Param("format", "code", "File format", choices=lambda case: EXPORT_FORMATS, default="csv"),
            *filter_params(queues))


NOTE = Field("note", "text", "A note for the ticket's timeline (the resident is told of a change of state)", max_length=MAX_NOTE_CHARS)

ACTION = Body((
    Field("action", "text", "A workflow action (a transition of config/workflow.toml; GET /workflow)", required=True, max_length=32,
          choices=_actions),
    NOTE,
    Field("category", "text", "New category (only with the workflow's reroute_action)", max_length=48, choices=_categories),
    Field("area_code", "text", "New grid (only with the workflow's reroute_action)", max_length=32, choices=_areas),
), "A workflow action, as `minyi ticket act`: rights checked, refusals audited, notices sent", {"action": "accept", "note": "已联系物业"})

BULK_DISPATCH = Body((
    Field("numbers", "numbers", "The tickets to dispatch (distinct numbers)", required=True, max_items=MAX_BULK),
    Field("category", "text", "New category of every ticket", max_length=48, choices=_categories),
    Field("area_code", "text", "New grid of every ticket", max_length=32, choices=_areas),
    NOTE,
), "Bulk dispatch: the reroute action on each ticket in turn, a result for each",
    {"numbers": ["20260105-0001", "20260105-0002"], "category": "garbage", "area_code": "420199001001001"})

COMMENT = Body((Field("text", "text", "An internal note: staff see it, the resident never does", required=True,
                      max_length=MAX_NOTE_CHARS),), "An internal note", {"text": "已电话联系物业经理"})

SUPERVISE = Body((Field("note", "text", "What the handler is told (default 请抓紧办理)", max_length=MAX_NOTE_CHARS),),
                 "督办: the handler (or the grid and department) is told to hurry", {"note": "请今天内处理"})

MERGE = Body((
    Field("into", "text", "The open ticket of the same problem to merge into", required=True, pattern=NUMBER_PATTERN),
    NOTE,
), "合并重复: this ticket is closed as a duplicate of `into`", {"into": "20260105-0001"})

PART = Body((
    Field("department", "text", "The co-department whose part it is: a department code of config/taxonomy.toml "
          "(GET /categories); the ticket must have a part of it", required=True, max_length=32, choices=_departments),
    Field("action", "text", "A part action: the word of a part transition of config/workflow.toml [part]", required=True,
          max_length=32, choices=_part_words),
    Field("note", "text", "What was done (kept on the part and in the ticket's timeline)", max_length=MAX_NOTE_CHARS),
), "联合派单: a co-department works its part of a joint ticket, as `minyi ticket part`: rights checked "
   "(the part's department), refusals audited", {"department": "urban_mgmt", "action": "accept", "note": "已安排执法队员"})
