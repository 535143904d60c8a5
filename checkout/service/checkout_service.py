"""kassa.checkout.v1.CheckoutService: sessions and the ConfirmCheckout saga."""

from __future__ import annotations

import grpc

from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.checkout.start import StartCheckout
from checkout.biz.checkout.update_state import CheckoutState, StateUpdate
from checkout.service.convert import (
    confirm_result_to_pb,
    preview_to_pb,
    price_change_to_pb,
    session_to_pb,
    stripped_address_from_pb,
)
from checkout.service.validation import (
    check_confirm_checkout,
    check_session_id,
    check_start_checkout,
    check_state_update,
)
from infra.auth import require_caller
from infra.pb import money_from_pb
from kassa.checkout.v1 import checkout_service_pb2 as pb
from kassa.checkout.v1 import checkout_service_pb2_grpc as pb_grpc
from kernel.errors import InvalidArgument

__all__ = ["CheckoutServiceServicer", "state_update"]

_MASKABLE = frozenset(
    {"email", "shipping_address", "billing_address", "shipping_method", "payment_method", "promotion_codes", "notes"}
)


def state_update(request: pb.UpdateCheckoutStateRequest) -> StateUpdate:
    """The proto's update_mask rule: listed fields are replaced (even by empty values, which clear them);
    with no mask, every field set in the request replaces the stored one and unset fields are kept."""
    paths = list(request.update_mask.paths)
    for i, path in enumerate(paths):
        if path not in _MASKABLE:
            raise InvalidArgument(f"update_mask.paths[{i}]", f"unknown field {path!r}")
    masked = set(paths)

    def chosen(name: str, is_set: bool) -> bool:
        return name in masked if masked else is_set

    has_shipping = request.HasField("shipping_address")
    has_billing = request.HasField("billing_address")
    return StateUpdate(
        email=request.email if chosen("email", bool(request.email)) else None,
        shipping_address=stripped_address_from_pb(request.shipping_address)
        if chosen("shipping_address", has_shipping) and has_shipping
        else None,
        clear_shipping_address="shipping_address" in masked and not has_shipping,
        billing_address=stripped_address_from_pb(request.billing_address)
        if chosen("billing_address", has_billing) and has_billing
        else None,
        clear_billing_address="billing_address" in masked and not has_billing,
        shipping_method=request.shipping_method if chosen("shipping_method", bool(request.shipping_method)) else None,
        payment_method=request.payment_method if chosen("payment_method", bool(request.payment_method)) else None,
        promotion_codes=list(request.promotion_codes)
        if chosen("promotion_codes", bool(request.promotion_codes))
        else None,
        notes=request.notes if chosen("notes", bool(request.notes)) else None,
    )


class CheckoutServiceServicer(pb_grpc.CheckoutServiceServicer):
    def __init__(self, start: StartCheckout, state: CheckoutState, confirm: ConfirmCheckout) -> None:
        self._start = start
        self._state = state
        self._confirm = confirm

    async def StartCheckout(
        self, request: pb.StartCheckoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartCheckoutResponse:
        cart_id = check_start_checkout(request)
        session, changes = await self._start(require_caller(), cart_id, request.ship_to_country_code)
        return pb.StartCheckoutResponse(
            session=session_to_pb(session), price_changes=[price_change_to_pb(c) for c in changes]
        )

    async def UpdateCheckoutState(
        self, request: pb.UpdateCheckoutStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCheckoutStateResponse:
        caller = require_caller()
        update = check_state_update(state_update(request))
        session = await self._state.update(caller, check_session_id(request.session_id), update)
        return pb.UpdateCheckoutStateResponse(session=session_to_pb(session))

    async def PreviewOrder(
        self, request: pb.PreviewOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewOrderResponse:
        caller = require_caller()
        preview = await self._state.preview(caller, check_session_id(request.session_id))
        return pb.PreviewOrderResponse(preview=preview_to_pb(preview))

    async def ConfirmCheckout(
        self, request: pb.ConfirmCheckoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmCheckoutResponse:
        session_id = check_confirm_checkout(request)
        expected = money_from_pb(request.expected_grand_total)
        result = await self._confirm(require_caller(), session_id, request.idempotency_key, expected)
        return confirm_result_to_pb(result)

    async def GetCheckoutSession(
        self, request: pb.GetCheckoutSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCheckoutSessionResponse:
        caller = require_caller()
        session = await self._state.get(caller, check_session_id(request.session_id))
        return pb.GetCheckoutSessionResponse(session=session_to_pb(session))
