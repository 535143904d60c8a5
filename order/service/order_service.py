"""kassa.order.v1.OrderService: validate, pb → model, call the use case, model → pb."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from infra.auth import require_caller, require_privileged
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1 import order_service_pb2_grpc
from order.biz.cancel_order import CancelOrder
from order.biz.create_order import CreateOrder
from order.biz.get_order import GetOrder
from order.biz.get_order_timeline import GetOrderTimeline
from order.biz.list_orders import ListOrders
from order.biz.record_payment import RecordPayment
from order.biz.update_fulfillment import UpdateFulfillment
from order.service.convert import (
    new_order_from_pb,
    order_to_pb,
    outcome_from_pb,
    status_change_to_pb,
    status_from_pb,
)
from order.service.validation import (
    Limits,
    check_order_id,
    validate_cancel,
    validate_fulfillment,
    validate_list_orders,
    validate_new_order,
    validate_record_payment,
)

__all__ = ["OrderServiceServicer", "UseCases"]


@dataclass(frozen=True)
class UseCases:
    create_order: CreateOrder
    get_order: GetOrder
    list_orders: ListOrders
    cancel_order: CancelOrder
    record_payment: RecordPayment
    update_fulfillment: UpdateFulfillment
    get_order_timeline: GetOrderTimeline


class OrderServiceServicer(order_service_pb2_grpc.OrderServiceServicer):
    def __init__(self, use_cases: UseCases, limits: Limits) -> None:
        self._uc = use_cases
        self._limits = limits

    async def CreateOrder(
        self, request: pb.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateOrderResponse:
        require_privileged()
        new = validate_new_order(new_order_from_pb(request), self._limits)
        order, created = await self._uc.create_order(new)
        return pb.CreateOrderResponse(order=order_to_pb(order), created=created)

    async def GetOrder(self, request: pb.GetOrderRequest, context: grpc.aio.ServicerContext) -> pb.GetOrderResponse:
        caller = require_caller()
        order = await self._uc.get_order(check_order_id(request.order_id), caller)
        return pb.GetOrderResponse(order=order_to_pb(order))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrdersResponse:
        caller = require_caller()
        validate_list_orders(request.customer_id)
        orders, next_token = await self._uc.list_orders(
            caller, request.page_size, request.page_token, request.customer_id
        )
        return pb.ListOrdersResponse(orders=[order_to_pb(o) for o in orders], next_page_token=next_token)

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelOrderResponse:
        caller = require_caller()
        order_id = check_order_id(request.order_id)
        validate_cancel(request.reason)
        order = await self._uc.cancel_order(order_id, caller, request.reason)
        return pb.CancelOrderResponse(order=order_to_pb(order))

    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordPaymentResponse:
        require_privileged()
        order_id = check_order_id(request.order_id)
        outcome = validate_record_payment(outcome_from_pb(request.outcome), request.payment_id, request.cause)
        order = await self._uc.record_payment(order_id, outcome, payment_id=request.payment_id, cause=request.cause)
        return pb.RecordPaymentResponse(order=order_to_pb(order))

    async def UpdateFulfillment(
        self, request: pb.UpdateFulfillmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateFulfillmentResponse:
        require_privileged()
        order_id = check_order_id(request.order_id)
        target = validate_fulfillment(status_from_pb(request.status), request.tracking_number, request.carrier)
        order = await self._uc.update_fulfillment(order_id, target, request.tracking_number, request.carrier)
        return pb.UpdateFulfillmentResponse(order=order_to_pb(order))

    async def GetOrderTimeline(
        self, request: pb.GetOrderTimelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOrderTimelineResponse:
        caller = require_caller()
        changes = await self._uc.get_order_timeline(check_order_id(request.order_id), caller)
        return pb.GetOrderTimelineResponse(events=[status_change_to_pb(c) for c in changes])
