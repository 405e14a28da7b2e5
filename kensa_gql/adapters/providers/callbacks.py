"""Per-task callback URLs for vendors that call back (EvoLink, Ark), and their check.

``{public_url}/webhooks/{provider}/{video_uuid}/{token}``: the token is an HMAC of the provider
and the video keyed with that provider's API key, so it is unguessable without the key, needs
no table of its own, and every gateway process computes the same one. Vendors do not sign their
callbacks, so a valid token only earns the request a hint: the runner re-fetches the task.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

TOKEN_BYTES = 24  # 192 bits


class CallbackUrls:
    """Only an https public URL gets callbacks: vendors refuse plain http, and so would we."""

    def __init__(self, public_url: str, secrets: Mapping[str, str]) -> None:
        self._base = public_url.rstrip("/") if public_url.startswith("https://") else None
        self._secrets = {name: secret.encode() for name, secret in secrets.items() if secret}

    @property
    def enabled(self) -> bool:
        return self._base is not None

    def url_for(self, provider: str, video_uuid: str) -> str | None:
        if self._base is None or provider not in self._secrets:
            return None
        return f"{self._base}/webhooks/{provider}/{video_uuid}/{self._token(provider, video_uuid)}"

    def verify(self, provider: str, video_uuid: str, token: str) -> bool:
        if provider not in self._secrets:
            return False
        return hmac.compare_digest(self._token(provider, video_uuid).encode(), token.encode())

    def _token(self, provider: str, video_uuid: str) -> str:
        message = f"kensa-callback\x00{provider}\x00{video_uuid}".encode()
        digest = hmac.new(self._secrets[provider], message, hashlib.sha256).digest()[:TOKEN_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
