"""Settings: TOML defaults in config/, overridden by MINYI_* environment variables.

Loaded once by the CLI and handed to the app factory; nothing reads the environment
after that, so tests build a Settings object and get a fully isolated app.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"

# Short names the brief promises, mapped to their section/key.
ENV_ALIASES = {
    "MINYI_DATA_DIR": ("data", "dir"),
    "MINYI_DATABASE_URL": ("database", "url"),
}


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536
    public_url: str = ""  # empty: this server's own address (`base_url`)
    # Signs links minyi sends (the 回访 page). Empty: derived from the WeChat token; set a
    # secret of its own in production, the same on every worker and host.
    link_secret: str = ""
    # Slow and many clients (bot/httpbody.py): a body must arrive within this time (408),
    # at most this many bodies are read at once (503 beyond, before anything is acknowledged).
    body_read_timeout_seconds: float = 10.0
    max_inflight_bodies: int = 256
    # Idle keep-alive connections are closed after this; aiohttp also applies it to an
    # unfinished request head (it has no separate header timeout).
    keepalive_timeout_seconds: float = 15.0
    # Listen backlog of each worker's socket (the kernel caps it at net.core.somaxconn).
    backlog: int = 1024

    @property
    def base_url(self) -> str:
        """The base of links minyi sends: `public_url`, or, when none is set (embedded use,
        `./dev serve --port 8766`), the address this server listens on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class LogSettings:
    format: str = "text"  # text | json (one JSON object per line)
    level: str = "INFO"


@dataclass(frozen=True)
class DataSettings:
    dir: str = "./data"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    auto_migrate: str = "auto"
    echo: bool = False
    pool_size: int = 10
    pool_timeout_seconds: float = 2.0


@dataclass(frozen=True)
class WeChatSettings:
    token: str = "minyi-dev-token"
    appid: str = "wx0000000000000000"
    secret: str = ""
    aes_key: str = ""
    api_base: str = "https://api.weixin.qq.com"
    timestamp_window_seconds: int = 300
    reply_budget_seconds: float = 4.0
    require_encryption: bool = False
    http_timeout_seconds: float = 10
    max_retries: int = 3
    fallback_template_id: str = ""
    fallback_subscribe_template_id: str = ""
    # The account's template ids of staff notices, "kind=ID,kind=ID" (config/notices.toml
    # names the kinds); over the template_id of that file. Empty: notices go as text.
    notice_templates: str = ""

    @property
    def offline(self) -> bool:
        """No secret means no access token: outbound calls go to the outbox only."""
        return not self.secret


@dataclass(frozen=True)
class DialogSettings:
    timeout_minutes: int = 30
    oneshot_min_chars: int = 12
    status_list_length: int = 5


@dataclass(frozen=True)
class HotlineSettings:
    number: str = "12345"
    hours: str = "08:30-17:30"  # local time, working days (the Chinese calendar of config/sla.toml)
    notify_role: str = "dispatcher"  # who is told, inside service hours, that a resident asks for a person


@dataclass(frozen=True)
class IntakeSettings:
    lease_seconds: float = 30.0
    sweep_seconds: float = 5.0
    max_attempts: int = 5


@dataclass(frozen=True)
class SchedulerSettings:
    # Workers not leading try to take leadership this often (bot/leader.py); a dead
    # leader is replaced within about this long.
    leader_retry_seconds: float = 10.0
    # The SLA clock's tick (warnings, breaches, escalations), in the leader.
    sla_tick_seconds: float = 60.0


@dataclass(frozen=True)
class SimulatorSettings:
    # auto: served while offline (no AppSecret) and bound to a loopback address only;
    # true forces it on, false off (see Settings.simulator_enabled).
    enabled: str = "auto"


LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback_host(host: str) -> bool:
    """True for a name or address that only this machine can reach: 127.0.0.0/8, ::1
    (also as an IPv4-mapped address) or localhost; never for 0.0.0.0, :: or ""."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


@dataclass(frozen=True)
class ConsoleSettings:
    """The staff console and JSON API (bot/console, bot/api)."""

    session_idle_minutes: int = 120  # a console login ends after this long unused
    session_max_hours: int = 12  # and after this long in any case (log in again each shift)
    max_failed_logins: int = 5  # per account or client address within the window, then locked
    failed_login_window_minutes: int = 15
    lockout_minutes: int = 15
    page_size: int = 30  # tickets a queue page shows
    export_max_rows: int = 50000


@dataclass(frozen=True)
class DemoSettings:
    load: str = "auto"


@dataclass(frozen=True)
class RoutingSettings:
    confidence_threshold: float = 0.35
    retrain_min_examples: int = 200
    retrain_cron_hour: int = 3


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    data: DataSettings = field(default_factory=DataSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    wechat: WeChatSettings = field(default_factory=WeChatSettings)
    dialog: DialogSettings = field(default_factory=DialogSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    hotline: HotlineSettings = field(default_factory=HotlineSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    log: LogSettings = field(default_factory=LogSettings)
    config_dir: Path = CONFIG_DIR

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir).expanduser().resolve()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'minyi.db'}"

    @property
    def models_dir(self) -> Path:
        """Versions of the learned router (nlp/learned.py)."""
        return self.data_dir / "models"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def auto_migrate(self) -> bool:
        value = str(self.database.auto_migrate).lower()
        if value == "auto":
            return self.is_sqlite
        return value in {"1", "true", "yes", "on"}

    @property
    def simulator_auto(self) -> bool:
        """The simulator decides by itself (enabled = auto): it then also checks each
        request (bot/sim: loopback socket and Host header)."""
        return str(self.simulator.enabled).strip().lower() == "auto"

    @property
    def simulator_enabled(self) -> bool:
        """/sim is served: forced on or off, or (auto) offline and bound to loopback only."""
        if self.simulator_auto:
            return self.wechat.offline and is_loopback_host(self.server.host)
        return str(self.simulator.enabled).strip().lower() in {"1", "true", "yes", "on"}

    @property
    def load_demo(self) -> bool:
        value = str(self.demo.load).lower()
        if value == "auto":
            return self.is_sqlite
        return value in {"1", "true", "yes", "on"}

    def replace(self, **sections: Mapping[str, Any]) -> "Settings":
        """A copy with some keys changed: settings.replace(wechat={"secret": "x"})."""
        return _apply(self, {name: dict(values) for name, values in sections.items()})


def _coerce(value: Any, kind: Any) -> Any:
    """Convert a TOML or environment value to the field's declared type."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in {"1", "true", "yes", "on"}
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    return str(value)


def _apply(settings: Settings, overrides: dict[str, dict[str, Any]]) -> Settings:
    changes: dict[str, Any] = {}
    for section_name, values in overrides.items():
        section = getattr(settings, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            raise ValueError(f"unknown settings section [{section_name}]")
        hints = typing.get_type_hints(type(section))
        typed = {}
        for key, value in values.items():
            if key not in hints:
                raise ValueError(f"unknown setting {section_name}.{key}")
            typed[key] = _coerce(value, hints[key])
        changes[section_name] = dataclasses.replace(section, **typed)
    return dataclasses.replace(settings, **changes)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for name, (section, key) in ENV_ALIASES.items():
        if name in environ:
            overrides.setdefault(section, {})[key] = environ[name]
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        section = getattr(defaults, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        for key_field in dataclasses.fields(section):
            env_name = f"MINYI_{f.name}_{key_field.name}".upper()
            if env_name in environ:
                overrides.setdefault(f.name, {})[key_field.name] = environ[env_name]
    return overrides


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults from config/minyi.toml, then the file in MINYI_CONFIG, then MINYI_* variables."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    with open(CONFIG_DIR / "minyi.toml", "rb") as fh:
        settings = _apply(settings, tomllib.load(fh))
    extra = environ.get("MINYI_CONFIG")
    if extra:
        with open(extra, "rb") as fh:
            settings = _apply(settings, tomllib.load(fh))
    return _apply(settings, _env_overrides(environ))
