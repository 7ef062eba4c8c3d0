"""API credentials as one value that never prints its secret.

Either an HMAC ``api_secret`` or a PEM ``private_key`` (Ed25519 or RSA) accompanies the
``api_key``. ``repr``/``str`` redact so a credential caught in a log line or an exception
text shows nothing sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    api_key: str
    api_secret: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)
    private_key_pass: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("an API key is required")
        if bool(self.api_secret) == bool(self.private_key_pem):
            raise ValueError("give exactly one of an API secret or a private key")

    @property
    def kind(self) -> str:
        if self.api_secret:
            return "HMAC"
        assert self.private_key_pem
        return "RSA" if "RSA" in self.private_key_pem or len(self.private_key_pem) > 400 else "Ed25519"

    def secrets(self) -> tuple[str, ...]:
        """Every sensitive string, for log redaction."""
        return tuple(s for s in (self.api_secret, self.private_key_pem, self.private_key_pass) if s)

    def __repr__(self) -> str:
        key = self.api_key[:4] + "…" if len(self.api_key) > 8 else "…"
        return f"Credentials(api_key={key!r}, kind={self.kind})"

    __str__ = __repr__
