"""Where a command goes and with what defaults: ``arrconfig.json``, then the environment, then flags.

``arrconfig.json`` is read exactly as ``RenderingSession.ps1`` (Azure/azure-remote-rendering ``Scripts/``) writes
it, so its users switch without touching it:

- ``accountSettings``: ``arrAccountId`` (a GUID), ``arrAccountKey``, ``arrAccountDomain``;
  ``renderingSessionSettings``: ``remoteRenderingDomain``, ``vmSize`` (``standard``/``premium``, any case),
  ``maxLeaseTime`` (a .NET ``[timespan]``: ``hh:mm:ss``, ``d.hh:mm:ss``, ``hh:mm``; a bare number is days, as in
  PowerShell). ``assetConversionSettings`` is ignored, and so is any field this CLI does not use.
- A value still holding its template text (``<fill in the account ID from the Azure Portal>``), null or blank is
  unset. The file may start with a byte order mark (the sample in the repository does).
- A domain is a region (``westeurope``), the region's domain (``westeurope.mixedreality.azure.com``), or a full URL
  (``https://...``), which is used as is, as the script's ``ToDomain`` does; another bare host gets the service's
  prefix (``sts.`` for the account domain, ``remoterendering.`` for the rendering domain) and ``https://``.
- The fields of older script versions are read too when the new ones are unset: ``accountSettings.region``,
  ``serviceEndpoint`` and ``authenticationEndpoint``.
- It must be a regular file (a link to one is fine) of at most :data:`MAX_CONFIG_BYTES`: a FIFO, a device
  (``/dev/zero``), a directory or a larger file is refused before anything is read from it (the script's file is
  under 2 KB), and JSON nested more than a few levels is a message, not a traceback.

Then the environment overrides the file (the app's own names, ``ARR_ACCOUNT_ID`` ...; blank is unset), and flags
override both. Every error names the field as the user wrote it and exits 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ENV_CALL_TIMEOUT, ConfigError, UsageError, needs_app
from .untrusted import MAX_DEPTH, parse_json

MAX_LEASE_MINUTES = 1440  # ARR's limit (arr_core.arr.validation); not imported so that parsing stays import-light
DEFAULT_CONFIG_NAME = "arrconfig.json"
MAX_CONFIG_BYTES = 1024 * 1024  # RenderingSession.ps1's file is under 2 KB
DEFAULT_SIZE = "Standard"
DEFAULT_LEASE_MINUTES = 60  # the app's default (ARR_DEFAULT_LEASE_MINUTES): a forgotten session costs an hour
PLACEHOLDER = re.compile(r"^\s*<.*>\s*$", re.DOTALL)
REGION = re.compile(r"^[a-z0-9]+$")
AZURE_SUFFIX = ".mixedreality.azure.com"

ENV_CONFIG = "ARR_SESSIONS_CONFIG"
ENV_APP_URL = "ARR_SESSIONS_APP_URL"
ENV_FUNCTION_KEY = "ARR_SESSIONS_FUNCTION_KEY"


# -- values ------------------------------------------------------------------------------------------------------

_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d+):(\d+)(?::(\d+)(?:\.(\d{1,7}))?)?$")
_DAYS = re.compile(r"^(-)?(\d+)$")


def timespan_minutes(text: str) -> int:
    """Minutes in a .NET ``[timespan]`` string, rounded as PowerShell's ``-as [int]`` does (half to even).

    ``hh:mm``, ``hh:mm:ss``, ``hh:mm:ss.fffffff``, ``d.hh:mm:ss`` and a bare number of *days*; hours run 0-23,
    minutes and seconds 0-59, as ``[timespan]`` demands. Raises ValueError saying what is wrong.
    """
    value = text.strip()
    days_only = _DAYS.fullmatch(value)
    if days_only:
        sign, days = days_only.groups()
        total = int(days) * 86400
    else:
        match = _TIMESPAN.fullmatch(value)
        if not match:
            msg = "is not a time span: write hh:mm:ss, e.g. 01:30:00"
            raise ValueError(msg)
        sign, days, hours, minutes, seconds, fraction = match.groups()
        if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
            msg = "is not a time span: hours go 0-23 and minutes and seconds 0-59 (a day is 1.00:00:00)"
            raise ValueError(msg)
        total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
        total += float(f"0.{fraction}") if fraction else 0.0
    if sign:
        msg = "must not be negative"
        raise ValueError(msg)
    return round(total / 60)


def lease_minutes(text: str, *, what: str) -> int:
    """A lease from a flag or setting: whole minutes (``90``) or a time span (``1:30:00``); 0-1440."""
    value = text.strip()
    try:
        minutes = int(value) if re.fullmatch(r"\d+", value) else timespan_minutes(value)
    except ValueError as exc:
        raise ConfigError(what, f"{str(exc).replace('is not a time span', 'must be minutes or a time span')}"
                                f", not {text!r}") from None
    _check_lease(minutes, what, text)
    return minutes


def _check_lease(minutes: int, what: str, text: object, source: str | None = None) -> None:
    if minutes > MAX_LEASE_MINUTES:
        raise ConfigError(what, f"is {minutes} minutes ({text!r}); ARR allows at most {MAX_LEASE_MINUTES} (24 h)",
                          source=source)


def duration_seconds(text: str, *, what: str) -> float:
    """``90`` or ``90s`` seconds, ``10m``, ``1h``; more than 0."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise ConfigError(what, f"must be a duration such as 90, 90s, 10m or 1h, not {text!r}")
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(what, f"must be more than 0, not {text!r}")
    return seconds


def size_name(text: str, *, what: str, source: str | None = None) -> str:
    """``Standard`` or ``Premium`` from any case (the script writes ``standard``)."""
    for name in ("Standard", "Premium"):
        if text.strip().lower() == name.lower():
            return name
    raise ConfigError(what, f"must be standard or premium, not {text!r}", source=source)


def account_guid(text: str, *, what: str, source: str | None = None) -> str:
    """An account id: a GUID, as the script checks (``[GUID]``), returned as written."""
    try:
        uuid.UUID(text.strip())
    except ValueError:
        raise ConfigError(what, f"must be the account ID from the Azure portal (a GUID), not {text!r}",
                          source=source) from None
    return text.strip()


def _service_url(text: str, prefix: str, *, what: str, source: str | None) -> str:
    """A region, a region's domain, a bare host or a URL as the service's base URL (``ToDomain``, made total)."""
    value = text.strip()
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(what, f"must be a region such as westeurope or an http(s) URL, not {text!r}",
                              source=source)
        return value.rstrip("/")
    bare = value.removesuffix("/").lower()
    region = bare.removesuffix(AZURE_SUFFIX)
    if REGION.fullmatch(region):
        return f"https://{prefix}.{region}{AZURE_SUFFIX}"
    if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?", bare):
        return f"https://{bare}" if bare.startswith(f"{prefix}.") else f"https://{prefix}.{bare}"
    raise ConfigError(what, f"must be a region such as westeurope, a domain, or an http(s) URL, not {text!r}",
                      source=source)


def sts_url(text: str, *, what: str, source: str | None = None) -> str:
    """The account domain as the STS's URL: ``westeurope`` -> ``https://sts.westeurope.mixedreality.azure.com``."""
    return _service_url(text, "sts", what=what, source=source)


def rendering_url(text: str, *, what: str, source: str | None = None) -> str:
    """The rendering domain as ARR's URL: ``westeurope`` -> ``https://remoterendering.westeurope...``."""
    return _service_url(text, "remoterendering", what=what, source=source)


# -- arrconfig.json ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileSettings:
    """What ``arrconfig.json`` says, placeholders removed and every value checked; None where unset."""

    path: Path
    account_id: str | None = None
    account_key: str | None = field(default=None, repr=False)
    sts_endpoint: str | None = None
    endpoint: str | None = None
    size: str | None = None
    lease_minutes: int | None = None


def _section(data: dict[str, object], name: str, source: str) -> dict[str, object]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(name, "must be an object ({ ... })", source=source)
    return value


def _text(section: dict[str, object], section_name: str, key: str, source: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{section_name}.{key}", f"must be a string, not {json.dumps(value)}", source=source)
    if not value.strip() or PLACEHOLDER.fullmatch(value):
        return None
    return value


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO, a named pipe"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _refuse_unless_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    real = os.path.realpath(path)
    target = f": {real}" if real != os.path.abspath(path) else ""
    raise UsageError(f"{path}: is not a regular file (it is {kind}{target})",
                     hint="Give the path of the arrconfig.json file itself.")


def read_config_file(path: Path) -> bytes:
    """The bytes of ``path``, a regular file (links followed) of at most :data:`MAX_CONFIG_BYTES`.

    Anything else is refused before a byte is read: the kind is checked before the file is opened (so no device
    is even opened), and again on what was opened (non-blocking, so a FIFO put there in between cannot block)."""
    try:
        _refuse_unless_regular(path, os.stat(path).st_mode)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(path, flags), "rb") as file:
            _refuse_unless_regular(path, os.fstat(file.fileno()).st_mode)
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file", hint="Give --config PATH or set ARR_SESSIONS_CONFIG.") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({type(exc).__name__}: {exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"{path}: is larger than {MAX_CONFIG_BYTES // 2**20} MiB, which no arrconfig.json is "
                         "(RenderingSession.ps1's is under 2 KB)",
                         hint="Give the path of the arrconfig.json file itself.")
    return data


def load_arrconfig(path: Path) -> FileSettings:
    """Read ``arrconfig.json``; a malformed file or field raises :class:`ConfigError` naming it."""
    source = str(path)
    try:
        text = read_config_file(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: cannot be read (not UTF-8: {exc.reason} at byte {exc.start})") from None
    try:
        data = parse_json(text, max_depth=MAX_DEPTH)
    except ValueError as exc:
        what = str(exc)
        if what.startswith("not JSON: "):
            raise UsageError(f"{path}: not valid JSON: {what.removeprefix('not JSON: ')}",
                             hint="A stray or missing comma often does it." if " at line " in what else None) from None
        raise UsageError(f"{path}: {what}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must hold a JSON object with accountSettings and renderingSessionSettings")

    account = _section(data, "accountSettings", source)
    rendering = _section(data, "renderingSessionSettings", source)

    def text_of(section: dict[str, object], name: str, key: str) -> str | None:
        return _text(section, name, key, source)

    account_id = text_of(account, "accountSettings", "arrAccountId")
    if account_id is not None:
        account_id = account_guid(account_id, what="accountSettings.arrAccountId", source=source)
    account_key = text_of(account, "accountSettings", "arrAccountKey")

    # Today's fields, then those of script versions before 2023 (region, serviceEndpoint, authenticationEndpoint).
    region = text_of(account, "accountSettings", "region")
    sts_endpoint = None
    for key, section, name in (("arrAccountDomain", account, "accountSettings"),
                               ("authenticationEndpoint", account, "accountSettings"),
                               ("region", account, "accountSettings")):
        value = text_of(section, name, key)
        if value is not None:
            sts_endpoint = sts_url(value, what=f"{name}.{key}", source=source)
            break
    endpoint = None
    for key, section, name in (("remoteRenderingDomain", rendering, "renderingSessionSettings"),
                               ("serviceEndpoint", account, "accountSettings")):
        value = text_of(section, name, key)
        if value is not None:
            endpoint = rendering_url(value, what=f"{name}.{key}", source=source)
            break
    if endpoint is None and region is not None:
        endpoint = rendering_url(region, what="accountSettings.region", source=source)

    size = text_of(rendering, "renderingSessionSettings", "vmSize")
    if size is not None:
        size = size_name(size, what="renderingSessionSettings.vmSize", source=source)
    lease_text = text_of(rendering, "renderingSessionSettings", "maxLeaseTime")
    lease = None
    if lease_text is not None:
        try:
            lease = timespan_minutes(lease_text)
        except ValueError as exc:
            raise ConfigError("renderingSessionSettings.maxLeaseTime", f"{exc}, not {lease_text!r}",
                              source=source) from None
        _check_lease(lease, "renderingSessionSettings.maxLeaseTime", lease_text, source)
    return FileSettings(path=path, account_id=account_id, account_key=account_key, sts_endpoint=sts_endpoint,
                        endpoint=endpoint, size=size, lease_minutes=lease)


# -- targets -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DirectConfig:
    """ARR itself, with an account key or (without one) azure-identity's DefaultAzureCredential."""

    endpoint: str
    sts_endpoint: str
    account_id: str
    account_key: str | None = field(default=None, repr=False)
    managed_identity_client_id: str | None = None
    key_source: str | None = None  # where the key came from, for messages (never the key)

    @property
    def account_domain(self) -> str:
        host = urlsplit(self.sts_endpoint).hostname or ""
        return host.removeprefix("sts.")

    def describe(self) -> str:
        auth = f"account key from {self.key_source}" if self.account_key else "Azure sign-in (DefaultAzureCredential)"
        return f"ARR {self.endpoint}, account {self.account_id}, {auth}"


@dataclass(frozen=True)
class AppConfig:
    """The deployed arr-sessions app: its base URL (without ``/api``) and a function key."""

    url: str
    function_key: str | None = field(default=None, repr=False)
    key_source: str | None = field(default=None, compare=False)  # where the key came from (never the key)

    def describe(self) -> str:
        return f"app {self.url}" + (f" (with the function key from {self.key_source})" if self.function_key else "")


@dataclass(frozen=True)
class Flags:
    """The target and default options a command was given; None where not given."""

    config: Path | None = None
    app: str | None = None
    function_key: str | None = field(default=None, repr=False)
    account_id: str | None = None
    account_key: str | None = field(default=None, repr=False)
    account_domain: str | None = None
    rendering_domain: str | None = None


@dataclass(frozen=True)
class Resolved:
    """A target, and the size and lease a start uses when its flags give none (None: the app's defaults)."""

    target: DirectConfig | AppConfig
    size: str | None
    lease_minutes: int | None
    config_path: Path | None
    call_timeout: float | None = None  # seconds one call may take, whole (ARR_SESSIONS_CALL_TIMEOUT); None: default

    @property
    def is_app(self) -> bool:
        return isinstance(self.target, AppConfig)


def _layered(parse: Callable[..., str], value: str | None, env: Mapping[str, str], names: list[str],
             flag: tuple[str, str | None]) -> str | None:
    """``value`` (from arrconfig.json), overridden by each set variable of ``names`` in turn, then by the flag."""
    for name in names:
        if _env(env, name):
            value = parse(env[name], what=name, source="environment")
    if flag[1]:
        value = parse(flag[1], what=flag[0])
    return value


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value is not None and value.strip() else None


def app_config(url: str, key: str | None, *, what: str, key_source: str | None = None) -> AppConfig:
    """The app's base URL (``/api`` and a trailing ``/`` dropped); a ``?code=`` in it becomes the function key
    (unless ``key`` is given, from ``key_source``) and leaves the URL, so that it never shows up in links or
    messages."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(what, f"must be the app's http(s) URL, e.g. https://func-arr-x.azurewebsites.net, "
                                f"not {_without_code(url)!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    code = next((v for k, v in query if k == "code" and v), None)
    rest = urlencode([(k, v) for k, v in query if k != "code"])
    path = parts.path.rstrip("/").removesuffix("/api").rstrip("/")
    if not key and code:
        key, key_source = code, f"the ?code= of {what}"
    return AppConfig(url=urlunsplit((parts.scheme, parts.netloc, path, rest, "")), function_key=key or None,
                     key_source=key_source if key else None)


def _without_code(url: str) -> str:
    parts = urlsplit(url)
    query = urlencode([(k, "***" if k == "code" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def config_path(flags: Flags, env: Mapping[str, str], cwd: Path) -> tuple[Path | None, bool]:
    """The ``arrconfig.json`` to read and whether it was asked for by name (then it must exist)."""
    if flags.config is not None:
        return flags.config, True
    named = _env(env, ENV_CONFIG)
    if named is not None:
        return Path(named), True
    default = cwd / DEFAULT_CONFIG_NAME
    return (default, False) if default.exists() else (None, False)  # there but not a file: refused when read


def resolve(flags: Flags, env: Mapping[str, str] | None = None, cwd: Path | None = None, *,
            command: str = "", needs_app_target: bool = False) -> Resolved:
    """The target and defaults for ``command``: flags over the environment over ``arrconfig.json``.

    With an app URL (``--app`` or ``ARR_SESSIONS_APP_URL``) the app is the target; otherwise ARR directly, which
    needs an account id, the account domain (or ``ARR_STS_ENDPOINT``) and the rendering domain.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd

    app_url, app_what = (flags.app, "--app") if flags.app else (_env(env, ENV_APP_URL), ENV_APP_URL)
    if needs_app_target and app_url is None:
        raise needs_app(command)

    path, _named = config_path(flags, env, cwd)
    file = load_arrconfig(path) if path is not None else None
    file = file or FileSettings(path=Path(DEFAULT_CONFIG_NAME))
    file_source = str(path) if path is not None else None

    size = file.size
    if _env(env, "ARR_DEFAULT_SIZE"):
        size = size_name(env["ARR_DEFAULT_SIZE"], what="ARR_DEFAULT_SIZE", source="environment")
    lease = file.lease_minutes
    if _env(env, "ARR_DEFAULT_LEASE_MINUTES"):
        lease = lease_minutes(env["ARR_DEFAULT_LEASE_MINUTES"], what="ARR_DEFAULT_LEASE_MINUTES")

    call_timeout = duration_seconds(env[ENV_CALL_TIMEOUT], what=ENV_CALL_TIMEOUT) if _env(env, ENV_CALL_TIMEOUT) \
        else None

    if app_url is not None:
        key, key_source = (flags.function_key, "--function-key") if flags.function_key else (
            _env(env, ENV_FUNCTION_KEY), ENV_FUNCTION_KEY)
        return Resolved(app_config(app_url, key, what=app_what, key_source=key_source), size, lease,
                        path if file_source else None, call_timeout)

    account_id = file.account_id
    if _env(env, "ARR_ACCOUNT_ID"):
        account_id = account_guid(env["ARR_ACCOUNT_ID"], what="ARR_ACCOUNT_ID", source="environment")
    if flags.account_id:
        account_id = account_guid(flags.account_id, what="--account-id")

    key, key_source = file.account_key, f"{file_source} accountSettings.arrAccountKey"
    if _env(env, "ARR_ACCOUNT_KEY"):
        key, key_source = env["ARR_ACCOUNT_KEY"].strip(), "ARR_ACCOUNT_KEY"
    if flags.account_key:
        key, key_source = flags.account_key, "--account-key"

    sts = _layered(sts_url, file.sts_endpoint, env, ["ARR_ACCOUNT_DOMAIN", "ARR_STS_ENDPOINT"],
                   ("--account-domain", flags.account_domain))
    endpoint = _layered(rendering_url, file.endpoint, env, ["ARR_REGION", "ARR_ENDPOINT"],
                        ("--rendering-domain", flags.rendering_domain))

    missing = [what for what, value in (
        ("the account id (--account-id, ARR_ACCOUNT_ID, or accountSettings.arrAccountId)", account_id),
        ("the account domain (--account-domain, ARR_ACCOUNT_DOMAIN, or accountSettings.arrAccountDomain)", sts),
        ("the rendering domain (--rendering-domain, ARR_ENDPOINT or ARR_REGION, or "
         + "renderingSessionSettings.remoteRenderingDomain)", endpoint),
    ) if value is None]
    if missing:
        looked = f"read {file_source}" if file_source else f"no {DEFAULT_CONFIG_NAME} in {cwd}"
        raise UsageError(f"No ARR account is configured ({looked}). Missing:\n" +
                         "\n".join(f"  - {what}" for what in missing),
                         hint="Or go through the app: --app URL, or ARR_SESSIONS_APP_URL.")
    assert account_id is not None and sts is not None and endpoint is not None
    target = DirectConfig(endpoint=endpoint, sts_endpoint=sts, account_id=account_id, account_key=key,
                          managed_identity_client_id=_env(env, "ARR_MANAGED_IDENTITY_CLIENT_ID"),
                          key_source=key_source if key else None)
    return Resolved(target, size or DEFAULT_SIZE, DEFAULT_LEASE_MINUTES if lease is None else lease,
                    path if file_source else None, call_timeout)
