"""Rules are data: which events of which sender do what. Pure: :func:`decide` maps an event to actions, each with
its rule and reason, or to nothing with the reason why; the hook's service carries the actions out (or, in a dry
run, only shows them).

A rule names its sender, optionally the event types it takes (exact names; any when left out), Event Grid's own
subject filters (``subjectBeginsWith``, ``subjectEndsWith``: case-insensitive, as Event Grid's are by default)
and equality conditions on the event's fields (``when``), and one action: ``start`` a session (size, lease, labels
and requester from templates over the fields, like ``"{container}/{blob}"``), ``stop`` the active sessions whose
labels match a scope, ``stopAll`` (every session not kept alive: the budget backstop) or ``extend`` the sessions of
a scope to a new total lease (the same total twice is no change, so a sender's retry cannot extend twice). Every
rule that matches acts, in order. A resolved alert and GitHub's ``ping`` never act.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal, get_args

from pydantic import Field, StrictInt, StringConstraints, ValidationError, field_validator, model_validator

from ...arr.models import SessionSize
from ...arr.validation import MAX_LEASE_MINUTES
from ..records import LABEL_KEY_PATTERN, MAX_LABELS, MAX_TEXT
from .senders import GITHUB_PING, RESOLVED, HookEvent, HookModel, Sender, fields_for

# Of the rules themselves.
RULE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_RULES = 100
MAX_TEMPLATE_CHARS = 1024
_PLACEHOLDER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

ActionKind = Literal["start", "stop", "stopAll", "extend"]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
Template = Annotated[str, StringConstraints(max_length=MAX_TEMPLATE_CHARS)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]


def clean_text(text: str) -> str:
    """What a hook writes into a label, requestedBy or reason: no control, format (bidi overrides, zero-width)
    or lone surrogate characters, which hide or reorder what people read later, and at most MAX_TEXT characters."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))[:MAX_TEXT]


def placeholders(template: str) -> list[str]:
    """The fields a template names: ``{name}`` only (``{{`` and ``}}`` are braces); no index, attribute,
    conversion or format, which would reach past the fields' strings."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        msg = f"{template[:64]!r} is not a template ({exc})"
        raise ValueError(msg) from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion or not _PLACEHOLDER.fullmatch(name):
            msg = f"{template[:64]!r} holds a placeholder other than {{fieldName}}"
            raise ValueError(msg)
        names.append(name)
    return names


def render(template: str, fields: dict[str, str]) -> str:
    """The template with its placeholders replaced by the fields, cleaned to what a label may hold."""
    text = "".join(literal + (fields.get(name, "") if name is not None else "")
                   for literal, name, _, _ in string.Formatter().parse(template))
    return clean_text(text)


# -- the rules -----------------------------------------------------------------------------------------------------

class StartAction(HookModel):
    kind: Literal["start"]
    size: Literal["Standard", "Premium"] | None = None  # None: the app's default size
    lease_minutes: StrictInt | None = Field(default=None, ge=0, le=MAX_LEASE_MINUTES)  # None: the app's default
    labels: dict[LabelKey, Template] = Field(default_factory=dict, max_length=MAX_LABELS)
    requested_by: Template | None = None  # None: "hook:<rule name>"
    reason: Template | None = None

    @field_validator("size", mode="before")
    @classmethod
    def _size_any_case(cls, value: object) -> object:
        try:
            return SessionSize(value).value if isinstance(value, str) else value
        except ValueError:
            return value


class StopAction(HookModel):
    kind: Literal["stop"]
    scope: dict[LabelKey, Template] = Field(min_length=1, max_length=MAX_LABELS)  # a session has all these labels
    reason: Template | None = None


class StopAllAction(HookModel):
    kind: Literal["stopAll"]
    reason: Template | None = None


class ExtendAction(HookModel):
    kind: Literal["extend"]
    scope: dict[LabelKey, Template] = Field(min_length=1, max_length=MAX_LABELS)
    lease_minutes: StrictInt = Field(ge=1, le=MAX_LEASE_MINUTES)  # the new total lease
    reason: Template | None = None


Action = Annotated[StartAction | StopAction | StopAllAction | ExtendAction, Field(discriminator="kind")]


class HookRule(HookModel):
    name: Annotated[str, StringConstraints(pattern=RULE_NAME_PATTERN)]
    sender: Sender
    event_types: tuple[EventType, ...] | None = Field(default=None, min_length=1)  # None: every type
    subject_begins_with: str | None = None
    subject_ends_with: str | None = None
    when: dict[str, str] = Field(default_factory=dict)  # field -> the exact value it must have
    action: Action

    def templates(self) -> Iterator[tuple[str, str]]:
        """Each template of the action, with where it is (``action.labels.blob``)."""
        for part in ("labels", "scope"):
            for key, template in getattr(self.action, part, {}).items():
                yield f"action.{part}.{key}", template
        for part, alias in (("requested_by", "requestedBy"), ("reason", "reason")):
            if (template := getattr(self.action, part, None)) is not None:
                yield f"action.{alias}", template

    @model_validator(mode="after")
    def _names_known_fields(self) -> HookRule:
        """Conditions and placeholders name fields that every event the rule takes carries."""
        known = fields_for(self.sender, self.event_types)
        carried = (f"{self.sender} events of type {', '.join(self.event_types)}" if self.event_types
                   else f"{self.sender} events") + f" carry {', '.join(sorted(known))}"
        for key in self.when:
            if key not in known:
                msg = f"when.{key}: no such field ({carried})"
                raise ValueError(msg)
        for where, template in self.templates():
            for name in placeholders(template):
                if name not in known:
                    msg = f"{where}: unknown placeholder {{{name}}} ({carried})"
                    raise ValueError(msg)
        if self.when.get("monitorCondition") == RESOLVED or (self.sender == "github" and self.event_types
                                                               and set(self.event_types) <= {GITHUB_PING}):
            msg = "the rule could never act: a resolved alert and GitHub's ping are only acknowledged"
            raise ValueError(msg)
        return self


def parse_rules(text: str) -> tuple[HookRule, ...]:
    """The rules of a JSON array (a setting's value). ValueError names the failing rule (by name, or by index
    when it has none) and field; two rules with one name are refused."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"the hook rules are not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise ValueError(msg) from None
    if not isinstance(value, list):
        msg = "the hook rules must be a JSON array of rules"
        raise ValueError(msg)  # noqa: TRY004 (a setting's malformed value, not a caller's wrong type)
    if len(value) > MAX_RULES:
        msg = f"{len(value)} hook rules: at most {MAX_RULES}"
        raise ValueError(msg)
    rules: list[HookRule] = []
    for index, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        label = f"rule {name[:64]!r}" if isinstance(name, str) and name else f"rule #{index}"
        try:
            rule = HookRule.model_validate(item)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = [str(part) for part in error["loc"] if part != "[key]"]  # a dict's key: named by the part before
            if loc[:1] == ["action"] and len(loc) > 1 and loc[1] in get_args(ActionKind):  # the union's tag
                del loc[1]
            problem = error["msg"].removeprefix("Value error, ")
            msg = f"{label}: {'.'.join(loc)}: {problem}" if loc else f"{label}: {problem}"
            raise ValueError(msg) from None
        if any(rule.name == earlier.name for earlier in rules):
            msg = f"{label}: an earlier rule has this name"
            raise ValueError(msg)
        rules.append(rule)
    return tuple(rules)


# -- decisions -----------------------------------------------------------------------------------------------------

class HookAction(HookModel):
    """One thing to do, the rule that asks for it, and why (for history, logs and a dry run)."""

    rule: str
    kind: ActionKind
    reason: str
    size: str | None = None
    lease_minutes: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # start: the new session's labels
    scope: dict[str, str] = Field(default_factory=dict)  # stop, extend: the labels a session must all have
    requested_by: str | None = None


class HookDecision(HookModel):
    """What an event makes the app do: actions, or none and the reason why (``ignored``)."""

    actions: tuple[HookAction, ...] = ()
    ignored: str | None = None


def mismatch(rule: HookRule, event: HookEvent) -> str | None:
    """Why ``rule`` does not take ``event``; None when it does."""
    subject = event.subject.casefold()
    if rule.sender != event.sender:
        return f"it is for {rule.sender}"
    if rule.event_types is not None and event.type not in rule.event_types:
        return f"it takes {', '.join(rule.event_types)}"
    if rule.subject_begins_with is not None and not subject.startswith(rule.subject_begins_with.casefold()):
        return f"the subject does not begin with {rule.subject_begins_with!r}"
    if rule.subject_ends_with is not None and not subject.endswith(rule.subject_ends_with.casefold()):
        return f"the subject does not end with {rule.subject_ends_with!r}"
    for key, value in rule.when.items():
        if event.fields.get(key) != value:
            return f"{key} is not {value!r}"
    return None


def decide(rules: Sequence[HookRule], event: HookEvent) -> HookDecision:
    """The actions of every rule that takes ``event``, in order; or none, and why."""
    if event.sender in ("alert", "budget") and event.fields.get("monitorCondition") == RESOLVED:
        name = event.fields.get("alertRule") or event.fields.get("budgetName") or event.type
        return HookDecision(ignored=clean_text(f"alert {name!r} resolved: acknowledged, a resolved alert never acts"))
    if event.sender == "github" and event.type == GITHUB_PING:
        return HookDecision(ignored="GitHub's ping: the webhook is set up; a ping never acts")
    actions = tuple(_action(rule, event) for rule in rules if mismatch(rule, event) is None)
    if actions:
        return HookDecision(actions=actions)
    why = "; ".join(f"rule {rule.name!r}: {mismatch(rule, event)}" for rule in rules if rule.sender == event.sender)
    return HookDecision(ignored=clean_text(f"no rule takes this {event.sender} event of type {event.type!r}"
                                           + (f" ({why})" if why else "")))


def _action(rule: HookRule, event: HookEvent) -> HookAction:
    action, fields = rule.action, event.fields
    about = f" {event.subject}" if event.subject else ""
    reason = render(action.reason, fields) if action.reason else clean_text(f"hook rule {rule.name}: {event.type}"
                                                                            f"{about}")
    if isinstance(action, StartAction):
        return HookAction(rule=rule.name, kind="start", reason=reason, size=action.size,
                          lease_minutes=action.lease_minutes,
                          labels={key: render(value, fields) for key, value in action.labels.items()},
                          requested_by=(action.requested_by and render(action.requested_by, fields))
                          or f"hook:{rule.name}")
    if isinstance(action, StopAllAction):
        return HookAction(rule=rule.name, kind="stopAll", reason=reason)
    return HookAction(rule=rule.name, kind=action.kind, reason=reason,
                      lease_minutes=getattr(action, "lease_minutes", None),
                      scope={key: render(value, fields) for key, value in action.scope.items()})
