"""What every HTTP route module gets: the inference core, the settings, and the protection tag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from ..config import Settings
from ..inference import InferenceCore
from ..services.classifier import ClassifierService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])  # functions and methods

# The attribute protected() sets on a handler: the gRPC service whose token rules apply to it.
SERVICE_ATTRIBUTE = "auth_service"
SETTINGS = web.AppKey("settings", Settings)


@dataclass(frozen=True)
class WebContext:
    core: InferenceCore
    settings: Settings
    classifier: ClassifierService  # our API's request handling, shared with the gRPC port


def protected(service: str) -> Callable[[H], H]:
    """Marks a handler as calling `service` (a gRPC service name): with --auth-token-file it needs a
    token valid for that service, as on the gRPC port, and with --tls-client-ca a client certificate.
    Handlers without the mark (probes, the page's static files) are open."""

    def mark(handler: H) -> H:
        setattr(handler, SERVICE_ATTRIBUTE, service)
        return handler

    return mark


def protected_service(handler) -> str | None:
    return getattr(handler, SERVICE_ATTRIBUTE, None)
