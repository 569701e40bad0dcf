"""The ticket workflow, read from config/workflow.toml: states, labels and transitions."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


# The kinds of state (config/workflow.toml `kind`): what code asks for instead of states.
OPEN_KIND = "open"  # with staff
TRIAGE_KIND = "triage"  # in the dispatcher's queue
WAITING_KIND = "waiting"  # waiting for the resident's answer
CLOSED_KIND = "closed"


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class State:
    code: str
    label: str
    open311: str
    sla_clock: str
    kind: str  # open / triage / waiting / closed
    stamp: str = ""  # ticket column set when first reached, e.g. accepted_at
    notify: str = ""  # dispatchers / handlers: who is told when a ticket arrives anew
    takes_handler: bool = False  # the staff member who moves a ticket here becomes its handler
    releases_handler: bool = False  # a ticket arriving here has no handler, to be accepted again


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[str]
    target: str
    label: str
    restarts_clock: bool = False  # new SLA deadlines from the moment of the action


class Workflow:
    def __init__(self, states: dict[str, State], transitions: dict[str, Transition], initial: str,
                 resident_reply_action: str = "", reroute_action: str = "",
                 label_states: tuple[str, ...] = ()) -> None:
        self.states = states
        self.label_states = label_states
        self.transitions = transitions
        self.initial = initial
        self.resident_reply_action = resident_reply_action
        self.reroute_action = reroute_action
        for name, action in (("resident_reply_action", resident_reply_action), ("reroute_action", reroute_action)):
            if action and action not in transitions:
                raise ValueError(f"{name} {action} is not a transition")
        if set(label_states) - states.keys():
            raise ValueError(f"label_states names unknown states {sorted(set(label_states) - states.keys())}")
        for t in transitions.values():
            unknown = (t.sources | {t.target}) - states.keys()
            if unknown:
                raise ValueError(f"transition {t.action} names unknown states {sorted(unknown)}")

    @classmethod
    def load(cls, path: Path) -> "Workflow":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        states = {s["code"]: State(s["code"], s["label"], s["open311"], s["sla_clock"], s["kind"],
                                   s.get("stamp", ""), s.get("notify", ""), bool(s.get("takes_handler", False)),
                                   bool(s.get("releases_handler", False)))
                  for s in raw["state"]}
        transitions = {
            t["action"]: Transition(t["action"], frozenset(t["from"]), t["to"], t["label"], bool(t.get("restarts_clock")))
            for t in raw["transition"]
        }
        return cls(states, transitions, raw["initial"], raw.get("resident_reply_action", ""),
                   raw.get("reroute_action", ""), tuple(raw.get("label_states", ())))

    def states_of_kind(self, kind: str) -> tuple[str, ...]:
        """State codes of one kind, e.g. states_of_kind("waiting"); sorted, for stable SQL."""
        return tuple(sorted(code for code, state in self.states.items() if state.kind == kind))

    def states_with_clock(self, clock: str) -> tuple[str, ...]:
        """State codes whose SLA clock is `clock` (running / paused / stopped)."""
        return tuple(sorted(code for code, state in self.states.items() if state.sla_clock == clock))

    def open_states(self) -> tuple[str, ...]:
        """State codes of tickets not yet closed (`is_open`); sorted, for stable SQL."""
        return tuple(sorted(code for code in self.states if self.is_open(code)))

    def notifies(self, status: str) -> str:
        state = self.states.get(status)
        return state.notify if state else ""

    def stamp(self, status: str) -> str:
        state = self.states.get(status)
        return state.stamp if state else ""

    def label(self, status: str) -> str:
        state = self.states.get(status)
        return state.label if state else status

    def is_open(self, status: str) -> bool:
        state = self.states.get(status)
        return state is None or state.open311 == "open"

    def target(self, status: str, action: str) -> str:
        transition = self.transitions.get(action)
        if transition is None:
            raise InvalidTransition(f"unknown action {action}")
        if status not in transition.sources:
            raise InvalidTransition(f"cannot {action} a ticket that is {status}")
        return transition.target
