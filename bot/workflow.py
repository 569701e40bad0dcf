"""The ticket workflow, read from config/workflow.toml: states, labels and transitions."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class State:
    code: str
    label: str
    open311: str
    sla_clock: str


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[str]
    target: str
    label: str


class Workflow:
    def __init__(self, states: dict[str, State], transitions: dict[str, Transition], initial: str) -> None:
        self.states = states
        self.transitions = transitions
        self.initial = initial
        for t in transitions.values():
            unknown = (t.sources | {t.target}) - states.keys()
            if unknown:
                raise ValueError(f"transition {t.action} names unknown states {sorted(unknown)}")

    @classmethod
    def load(cls, path: Path) -> "Workflow":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        states = {s["code"]: State(s["code"], s["label"], s["open311"], s["sla_clock"]) for s in raw["state"]}
        transitions = {
            t["action"]: Transition(t["action"], frozenset(t["from"]), t["to"], t["label"]) for t in raw["transition"]
        }
        return cls(states, transitions, raw["initial"])

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
