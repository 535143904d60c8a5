"""Webhook signatures: any header an attacker can send is refused with SignatureError, never a crash.

infra.webhook_signature is what both the gateway (400 INVALID_ARGUMENT, field ``signature``) and the
payment service (PERMISSION_DENIED) run on a provider's header, so anything else it raises (TypeError
from comparing non-ASCII text, ValueError from int() of a huge or non-ASCII number) would be a 500.
"""

from __future__ import annotations

import pytest

from infra.webhook_signature import SignatureError, sign, verify
from kernel.errors import PermissionDenied
from payment.adapter.sandbox_provider import SandboxProvider, provider_session

pytestmark = pytest.mark.unit

SECRET = "whsec_current_0123456789abcdef"
OLD = "whsec_previous_0123456789abcdef"
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
NOW = 1_700_000_000


def good() -> str:
    return sign(SECRET, BODY, timestamp=NOW)


def test_a_valid_signature_verifies() -> None:
    verify(SECRET, BODY, good(), now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(good()[:-2] + "é1", id="non-ascii-in-mac"),
        pytest.param(good()[:-1] + "\u0661", id="arabic-digit-in-mac"),
        pytest.param(f"t={NOW},v1=" + "ü" * 64, id="all-non-ascii-mac"),
        pytest.param("t=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,v1=" + "0" * 64, id="arabic-ts"),
        pytest.param("t=\u00b2,v1=" + "0" * 64, id="superscript-ts"),
        pytest.param("t=" + "9" * 5000 + ",v1=" + "0" * 64, id="huge-ts"),
        pytest.param(f"t={NOW},v1=" + "a" * 100_000, id="huge-mac"),
        pytest.param(",".join([f"t={NOW}"] + ["v1=" + "0" * 64] * 5000), id="many-parts"),
        pytest.param("", id="empty"),
        pytest.param(f"t={NOW}", id="no-mac"),
        pytest.param("v1=" + "0" * 64, id="no-ts"),
        pytest.param(f"t={NOW},v1=", id="empty-mac"),
        pytest.param(f"t=-{NOW},v1=" + "0" * 64, id="negative-ts"),
        pytest.param(f"t= {NOW},v1=" + "0" * 64, id="space-ts"),
        pytest.param("garbage", id="garbage"),
        pytest.param("\x00\x01\x02", id="control-chars"),
        pytest.param(f"t={NOW},v1={good().split('v1=')[1].upper()}", id="upper-case-hex"),
        pytest.param(f"t={NOW},v0={good().split('v1=')[1]}", id="wrong-scheme"),
    ],
)
def test_a_malformed_header_is_a_signature_error(header: str) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, header, now=NOW)


def test_a_non_ascii_secret_is_compared_as_bytes() -> None:
    secret = "whsec_ünïcødé_0123456789"
    verify(secret, BODY, sign(secret, BODY, timestamp=NOW), now=NOW)
    with pytest.raises(SignatureError):
        verify(secret, BODY, good(), now=NOW)


def test_any_of_several_secrets_verifies_during_rotation() -> None:
    verify([SECRET, OLD], BODY, good(), now=NOW)
    verify([SECRET, OLD], BODY, sign(OLD, BODY, timestamp=NOW), now=NOW)
    with pytest.raises(SignatureError):
        verify([SECRET, OLD], BODY, sign("whsec_someone_else_0123456789", BODY, timestamp=NOW), now=NOW)


def test_any_of_several_v1_signatures_verifies() -> None:
    """A provider rotating its own secret sends one v1 per secret (as Stripe does)."""
    ours = good().split("v1=")[1]
    theirs = sign(OLD, BODY, timestamp=NOW).split("v1=")[1]
    verify(SECRET, BODY, f"t={NOW},v1={theirs},v1={ours}", now=NOW)


def test_no_secret_verifies_nothing() -> None:
    with pytest.raises(SignatureError):
        verify([], BODY, good(), now=NOW)
    with pytest.raises(SignatureError):
        verify("", BODY, sign("", BODY, timestamp=NOW), now=NOW)


def test_stale_and_future_timestamps_are_refused() -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, BODY, good(), now=NOW + 301)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, BODY, good(), now=NOW - 301)


async def test_the_payment_service_refuses_a_non_ascii_signature_as_permission_denied() -> None:
    """Payment checks the signature again (HandleWebhook); a hostile header is PERMISSION_DENIED, not INTERNAL."""
    async with provider_session("http://127.0.0.1:9", 1.0) as client:  # parse_event makes no call
        provider = SandboxProvider(client, SECRET)
        with pytest.raises(PermissionDenied):
            provider.parse_event(BODY, good()[:-2] + "é1")
