"""Redaction of secrets that hide in less obvious spellings."""

from __future__ import annotations

import pytest

from veo3dl._redaction import REDACTED, redact_text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("https://x/y?api_key=abc123secret&b=1", "abc123secret"),
        ("https://x/?apiKey=abc123secret", "abc123secret"),
        # A signed URL carried percent-encoded inside another URL's query.
        (
            "https://r/?next=https%3A%2F%2Fs%2Fo%3FExpires%3D1%26Signature%3Dab%252Bsecret%26x%3D1",
            "ab%252Bsecret",
        ),
        ("https://r/?u=https%3A%2F%2Fa%2Fv1%2Fmedia%2FCAMa%3Fkey%3Dsecretkey", "secretkey"),
    ],
)
def test_encoded_and_prefixed_secret_parameters(text: str, secret: str) -> None:
    scrubbed = redact_text(text)
    assert secret not in scrubbed and REDACTED in scrubbed


def test_lookalike_parameters_are_kept() -> None:
    text = "https://x/?monkey=1&keys=2&Expires=3"
    assert redact_text(text) == text


def test_an_encoded_secret_stops_at_the_encoded_separator() -> None:
    scrubbed = redact_text("next=https%3A%2F%2Fs%2Fo%3FSignature%3Dsecret%26Expires%3D9")
    assert scrubbed.endswith("%26Expires%3D9") and "secret" not in scrubbed
