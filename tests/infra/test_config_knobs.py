"""Settings: the checkout's cost knobs are read, defaulted and bounded."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, Settings

DEV = {"KASSA_ENV": "development"}


def test_the_price_ttl_and_preview_reuse_default_to_five_seconds_and_zero_turns_them_off() -> None:
    default = Settings.from_env(DEV)
    assert (default.checkout_cart_price_ttl_seconds, default.checkout_preview_reuse_seconds) == (5, 5)
    off = Settings.from_env(
        {**DEV, "KASSA_CHECKOUT_CART_PRICE_TTL_SECONDS": "0", "KASSA_CHECKOUT_PREVIEW_REUSE_SECONDS": "0"}
    )
    assert (off.checkout_cart_price_ttl_seconds, off.checkout_preview_reuse_seconds) == (0, 0)


@pytest.mark.parametrize("name", ["KASSA_CHECKOUT_CART_PRICE_TTL_SECONDS", "KASSA_CHECKOUT_PREVIEW_REUSE_SECONDS"])
@pytest.mark.parametrize("value", ["-1", "61", "soon"])
def test_a_knob_out_of_bounds_refuses_to_start_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**DEV, name: value})


def test_the_smtp_idle_time_defaults_to_thirty_seconds_zero_is_a_connection_per_message_and_below_is_refused() -> None:
    assert Settings.from_env(DEV).smtp_idle_seconds == 30
    assert Settings.from_env({**DEV, "KASSA_SMTP_IDLE_SECONDS": "0"}).smtp_idle_seconds == 0
    for value in ("-1", "soon"):
        with pytest.raises(ConfigError, match="KASSA_SMTP_IDLE_SECONDS"):
            Settings.from_env({**DEV, "KASSA_SMTP_IDLE_SECONDS": value})
