"""InventoryService (warehouse) client: batch reservations, idempotent by reservation_ref."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import grpc

from checkout.adapter.base import GrpcClient, duration
from checkout.model.catalog import Reservation, Reservations, ReserveLine
from infra.channels import ServiceCredentials
from infra.pb import address_from_pb
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as pb_grpc

__all__ = ["GrpcInventoryAdapter"]


class GrpcInventoryAdapter(GrpcClient):
    def __init__(self, channel: grpc.aio.Channel, creds: ServiceCredentials, timeout_seconds: float) -> None:
        super().__init__(creds, timeout_seconds)
        self._stub = pb_grpc.InventoryServiceStub(channel)

    async def reserve_stock(
        self, reservation_ref: str, lines: Sequence[ReserveLine], ship_to_country_code: str, ttl_seconds: int
    ) -> Reservations:
        resp = await self._call(
            self._stub.ReserveStock,
            pb.ReserveStockRequest(
                reservation_ref=reservation_ref,
                lines=[pb.ReserveLine(sku=ln.sku, quantity=ln.quantity) for ln in lines],
                ship_to_country_code=ship_to_country_code,
                ttl=duration(ttl_seconds),
            ),
        )
        reservations = [
            Reservation(r.sku, r.warehouse_id, r.quantity, address_from_pb(r.origin)) for r in resp.reservations
        ]
        if resp.HasField("expires_at"):
            expires = resp.expires_at.ToDatetime(tzinfo=UTC)
        else:
            expires = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
        return Reservations(reservations, expires)

    async def extend_reservations(self, reservation_ref: str, ttl_seconds: int) -> datetime:
        resp = await self._call(
            self._stub.ExtendReservations,
            pb.ExtendReservationsRequest(reservation_ref=reservation_ref, ttl=duration(ttl_seconds)),
        )
        return resp.expires_at.ToDatetime(tzinfo=UTC)

    async def release_reservations(self, reservation_ref: str, reason: str) -> None:
        await self._call(
            self._stub.ReleaseReservations,
            pb.ReleaseReservationsRequest(reservation_ref=reservation_ref, reason=reason),
        )

    async def confirm_reservations(self, reservation_ref: str) -> None:
        await self._call(self._stub.ConfirmReservations, pb.ConfirmReservationsRequest(reservation_ref=reservation_ref))
