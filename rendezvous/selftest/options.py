"""What a self-test run checks and how: the options the command line fills in."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Element Web's origin: what a browser sends when the web client talks to a homeserver.
DEFAULT_ORIGIN = "https://app.element.io"
DEFAULT_REPEAT = 20
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SelfTestOptions:
    """What to test and how.

    ``base_url`` is the homeserver's client base URL (or the rendezvous server's own URL). ``gen1_create_url``
    overrides where the Gen-1 session is created (default: the homeserver's MSC4108 endpoint under
    ``base_url``). ``access_token`` is only sent to Gen-2 discovery and create and never printed.

    Requests go only to the origins of ``base_url`` and ``gen1_create_url`` and to ``allowed_origins``: the
    tested server chooses the session URL and the redirects, and must not be able to aim the run at another
    host (an internal address, say).
    """

    base_url: str
    gen1_create_url: str | None = None
    gen1: bool = True
    gen2: bool = True
    gen2_stable: bool = False
    origin: str = DEFAULT_ORIGIN
    repeat: int = DEFAULT_REPEAT
    timeout_s: float = DEFAULT_TIMEOUT_S
    access_token: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise ValueError("repeat must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
