"""Query parameters as models: a function parses its query with :func:`parse_query`, and the OpenAPI document
lists the same model's fields with :func:`query_parameters`, so what is accepted and what is documented cannot
drift apart.

A query model ignores names it does not know (``code``, the function key, rides along on every link); a value of
a known name that does not fit is a 400 that names it. So is an empty value (``?to=``, ``?status=``): OpenAPI 2.0's
``allowEmptyValue`` is false unless a parameter says otherwise, and none here does; leave a parameter out for its
default. Times (``from``, ``to``, ``before``) are ISO 8601, UTC unless they carry an offset, in a year from 2019 to
2199 as written: 2.0 has no bounds for a date-time, so the document states the years in a pattern (a whole RFC 3339
date-time, which the app reads as it is written), and in words.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import azure.functions as func
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from arr_core.api.views import LABELS_JSON_TEXT_PATTERN, Documented, HistoryOrder, ShortText, SizeName
from arr_core.domain.records import RECORD_STATUSES
from arr_core.errors import InvalidInput

from .http import parse_json, validate

Q = TypeVar("Q", bound=BaseModel)

FIRST_YEAR = 2019  # of a time given: ARR's first API version is of 2019
LAST_YEAR = 2199
MAX_SPAN = timedelta(days=400)
MAX_TOKEN_CHARS = 2048  # ours are ~300: anything longer was not issued here (and would overflow the filter)
EMPTY_MESSAGE = "must not be empty: leave it out for its default"


def _comma_list(value: object) -> object:
    """``Ready,Stopped`` (and ``Ready, Stopped``) as a list; Power Automate passes lists this way."""
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


def _plus_kept(value: object) -> object:
    """A ``+02:00`` offset typed into a URL unencoded arrives as a space."""
    return value.replace(" ", "+") if isinstance(value, str) else value


YEARS = f"in a year from {FIRST_YEAR} to {LAST_YEAR}"
TIME_RULE = f"ISO 8601, UTC unless it has an offset, {YEARS} as written"
# A time as the document states it: an RFC 3339 date-time (with format date-time, which checks the day of the month)
# in a year from FIRST_YEAR to LAST_YEAR as written, without a leap second (which the app's parser refuses). The app
# also reads a date alone, or a time without its offset (UTC).
INSTANT_PATTERN = (r"^(?:2019|20[2-9][0-9]|21[0-9]{2})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                   r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
                   r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")


def _in_range(value: datetime) -> datetime:
    """The year as written (with its own offset) bounds a time, so that the document's pattern can say it exactly."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        msg = f"must be a date or time {YEARS}"
        raise ValueError(msg)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _title_case(value: object) -> object:
    return value.capitalize() if isinstance(value, str) else value


Instant = Annotated[datetime, BeforeValidator(_plus_kept), AfterValidator(_in_range), Documented(INSTANT_PATTERN)]
RecordStatus = Literal[RECORD_STATUSES]  # type: ignore[valid-type]
ActiveStatus = Annotated[Literal["Starting", "Ready"], BeforeValidator(_title_case)]


def _summary(summary: str, **extra: Any) -> dict[str, Any]:
    return {"x-ms-summary": summary, **extra}


class Query(BaseModel):
    """camelCase names, unknown names ignored, values coerced from text."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


def _describe_default_start(schema: dict[str, Any], model: type[TimeWindow]) -> None:
    schema["properties"]["from"]["description"] = (f"Start, inclusive ({TIME_RULE}); before `to` and at most "
                                                   f"{MAX_SPAN.days} days before it; default {model.default_days} days "
                                                   "before `to`.")


class TimeWindow(Query):
    """``from`` and ``to``; :meth:`window` fills the defaults and checks the span."""

    model_config = ConfigDict(json_schema_extra=_describe_default_start)  # type: ignore[typeddict-item]
    default_days: ClassVar[int]

    start: Instant | None = Field(default=None, alias="from", json_schema_extra=_summary("From"))
    end: Instant | None = Field(default=None, alias="to", description=f"End, exclusive ({TIME_RULE}); default now.",
                                json_schema_extra=_summary("To"))

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        end = self.end or now
        start = self.start or end - timedelta(days=self.default_days)
        if start >= end:
            raise InvalidInput("from must be before to", field="from")
        if end - start > MAX_SPAN:
            raise InvalidInput(f"the range may span at most {MAX_SPAN.days} days", field="from")
        return start, end


class HistoryQuery(TimeWindow):
    """ListHistory: a window of 7 days by default, filters, and paging."""

    default_days = 7

    requested_by: ShortText | None = Field(default=None, description="Only sessions requested by this caller.",
                                           json_schema_extra=_summary("Requested by"))
    size: SizeName | None = Field(default=None, description="Only this size.", json_schema_extra=_summary("Size"))
    status: Annotated[frozenset[RecordStatus], BeforeValidator(_comma_list)] | None = Field(
        default=None, min_length=1, description="Only these statuses (comma list).",
        json_schema_extra=_summary("Status"))
    top: int = Field(default=100, ge=1, le=1000, description="Page size, 1-1000.",
                     json_schema_extra=_summary("Page size"))
    order: HistoryOrder = Field(default="oldest", json_schema_extra=_summary("Order"),
                                description="oldest (default) or newest: the sessions oldest or newest first, by "
                                "creation time; nextLink keeps the order, and its token is bound to it.")
    continuation_token: str | None = Field(default=None, max_length=MAX_TOKEN_CHARS,
                                           description="From a previous page's nextLink (a token of this app, for "
                                           "the same filters and order).",
                                           json_schema_extra=_summary("Continuation", **{"x-ms-visibility": "internal"}))


class UsageQuery(TimeWindow):
    """GetUsage: a window of 30 days by default, grouped by day, size or caller."""

    default_days = 30

    group_by: Literal["day", "size", "requestedBy"] = Field(
        default="day", json_schema_extra=_summary("Group by"),
        description="How to group rows: day (the local day of ARR_TIME_ZONE each session was created on), size or "
                    "requestedBy.")


class CleanupQuery(Query):
    """RunCleanup: which run, and whether only to decide."""

    dry_run: bool = Field(default=False, description="Decide without acting.", json_schema_extra=_summary("Dry run"))
    mode: Literal["lease", "nightly"] = Field(default="lease", json_schema_extra=_summary("Mode"),
                                              description="lease, or nightly to stop every non-exempt session.")


class RunsQuery(Query):
    """ListCleanupRuns: newest first, a page at a time."""

    before: Instant | None = Field(default=None, description=f"Only runs that started before this ({TIME_RULE}); "
                                   "default now. A page's nextLink sets it.", json_schema_extra=_summary("Before"))
    top: int = Field(default=20, ge=1, le=100, description="Page size, 1-100.", json_schema_extra=_summary("Page size"))


class ListQuery(Query):
    """ListSessions: ARR lists only active sessions, so only their statuses filter."""

    status: Annotated[frozenset[ActiveStatus], BeforeValidator(_comma_list)] | None = Field(
        default=None, min_length=1, description="Only these statuses (comma list of Starting, Ready).",
        json_schema_extra=_summary("Status"))


class StartQuery(Query):
    """StartSession's own query parameter; the body's fields may also come as query parameters."""

    payload: Literal["ignore"] | None = Field(default=None, description="'ignore' to skip the body (for webhooks).",
                                              json_schema_extra=_summary("Payload", **{"x-ms-visibility": "advanced"}))


class StopQuery(Query):
    """StopSession's query parameter: who asks, for senders that cannot shape a body (it wins over the body's)."""

    requested_by: ShortText | None = Field(default=None, json_schema_extra=_summary("Requested by"),
                                           description="Who asks for the stop, as the body's requestedBy.")


class SignedLinkQuery(Query):
    """A signed link's parameters (arr_core/api/signed_links.py): when it expires, and the app's signature."""

    expires: str | None = Field(default=None, pattern=r"^[0-9]{1,12}$", json_schema_extra=_summary("Expires"),
                                description="When the link expires, in seconds since 1970 (UTC); set by the app.")
    signature: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{43}$", json_schema_extra=_summary("Signature"),
                                  description="The app's signature of the link; set by the app.")


class HookQuery(Query):
    """A hook's query: ``dryRun`` shows what its rules would do with the delivery, and does nothing."""

    dry_run: bool | None = Field(default=None, json_schema_extra=_summary("Dry run"),
                                 description="Decide and show, but record and do nothing.")


# -- parsing -------------------------------------------------------------------------------------------------------

@functools.cache
def _object_fields(model: type[BaseModel]) -> frozenset[str]:
    """Wire names of fields that take a JSON object (``labels``): in a query they come as JSON text."""
    properties = model.model_json_schema(by_alias=True, mode="validation")["properties"]
    return frozenset(name for name, schema in properties.items() if _schema_type(schema) == "object")


def _schema_type(schema: dict[str, Any]) -> str | None:
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    return options[0].get("type") if options else None


def _json_object(raw: str, name: str) -> dict[str, Any]:
    value = parse_json(raw, name)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput(f"{name} must be a JSON object of strings", field=name)
    return value


def parse_query(req: func.HttpRequest, model: type[Q]) -> Q:
    """The request's query as ``model``; a 400 naming the parameter when a value does not fit or is empty."""
    known = {name: raw for name, raw in req.params.items() if name in _wire_names(model)}
    empty = [name for name, raw in known.items() if raw == ""]
    if empty:
        raise InvalidInput(f"empty value for {', '.join(empty)}: leave a parameter out for its default",
                           [(name, EMPTY_MESSAGE) for name in empty])
    objects = _object_fields(model)
    data = {name: _json_object(raw, name) if name in objects else raw for name, raw in known.items()}
    return validate(model, data, strict=False)


@functools.cache
def _wire_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(field.alias or name for name, field in model.model_fields.items())


# -- documenting ---------------------------------------------------------------------------------------------------

_KEPT = ("type", "format", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "default")
JSON_TEXT_PATTERNS = {"labels": LABELS_JSON_TEXT_PATTERN}  # a query parameter that takes an object, as JSON text


def query_parameters(model: type[BaseModel], *, note: str = "") -> list[dict[str, Any]]:
    """The model's fields as OpenAPI 2.0 query parameters (a list of statuses as a comma-separated string, an
    object as JSON text); ``note`` is appended to each description."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        options = [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]
        shape = {**options[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
        description = prop.get("description", "")
        if shape.get("type") == "array":
            choices = "|".join(shape["items"]["enum"])
            shape = {"type": "string", "pattern": f"^({choices})(,({choices}))*$"}
        elif shape.get("type") == "object":
            shape, description = {"type": "string", "pattern": JSON_TEXT_PATTERNS[name]}, f"{description} As JSON text."
        parameter = {"name": name, "in": "query", "required": name in required,
                     **{k: v for k, v in shape.items() if k in _KEPT and v is not None},
                     "description": description + note, "allowEmptyValue": False,
                     **{k: v for k, v in prop.items() if k.startswith("x-ms-")}}
        if "const" in shape:
            parameter["enum"] = [shape["const"]]
        if parameter["type"] == "string" and "enum" not in parameter and not parameter.get("minLength") and \
                re.search(parameter.get("pattern", ""), ""):
            parameter["minLength"] = 1  # an empty value is refused (parse_query): say so in the schema too
        parameters.append(parameter)
    return parameters
