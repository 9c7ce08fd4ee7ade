"""The ``notifications`` section of ``ct.yaml``: where messages go and which events send one.

Secrets (webhook URLs, SMTP user and password) are never written in ``ct.yaml``: the file names the
environment variables that hold them, and the values are read when a message is sent.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

EventKind = Literal["run_failed", "recovered", "champion_moved", "trigger_fired", "data_gate_blocked", "daemon_stopped",
                    "pipeline_check_failed"]
#: every event that can send a message
EVENTS: tuple[EventKind, ...] = get_args(EventKind)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
CHANNEL_NAME = r"^[a-z][a-z0-9_-]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class WebhookChannel(_Strict):
    """An HTTP POST of the message as JSON."""

    kind: Literal["webhook"]
    url_env: str = Field(pattern=ENV_NAME, description="environment variable that holds the webhook URL")
    format: Literal["json", "slack", "teams"] = Field(
        "json", description="json = the whole event; slack = {text}; teams = an Office 365 connector card")
    timeout_s: float = Field(10, gt=0, le=120)


class EmailChannel(_Strict):
    """A mail over SMTP."""

    kind: Literal["email"]
    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    sender: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    username_env: str | None = Field(None, pattern=ENV_NAME, description="environment variable of the SMTP user")
    password_env: str | None = Field(None, pattern=ENV_NAME, description="environment variable of the password")
    timeout_s: float = Field(10, gt=0, le=120)

    @model_validator(mode="after")
    def _login_pair(self) -> EmailChannel:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together (SMTP login needs both)")
        return self


Channel = Annotated[WebhookChannel | EmailChannel, Field(discriminator="kind")]
CHANNEL_KINDS = ("webhook", "email")


class RetryConfig(_Strict):
    attempts: int = Field(6, ge=1, le=50, description="deliveries tried per message before it is marked failed")
    backoff_s: float = Field(5, gt=0, description="wait before the second try; doubled after each failure")


class NotificationsConfig(_Strict):
    """Messages about runs, the champion and the daemon, sent to every channel."""

    channels: dict[Annotated[str, Field(pattern=CHANNEL_NAME)], Channel] = Field(
        default_factory=dict, description="name -> a webhook or an email channel; none: nothing is sent")
    events: list[EventKind] = Field(default_factory=lambda: list(EVENTS), description=(
        "events that send a message: " + ", ".join(EVENTS)))
    link_base: str | None = Field(None, pattern=r"^https?://", description=(
        "URL the project folder is served under (e.g. http://host:8888/lab/tree/project/); messages link "
        "a run's notebook under it, else name its path in the project"))
    retry: RetryConfig = Field(default_factory=RetryConfig)
