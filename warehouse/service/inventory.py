"""kassa.warehouse.v1.InventoryService: validate, convert, call biz. Nothing else."""

from __future__ import annotations

import logging

import grpc

from infra.auth import require_admin, require_privileged, require_service
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as pb_grpc
from warehouse.biz import manage_reservations, stock_admin
from warehouse.biz.ports import InventoryStore
from warehouse.biz.reserve_stock import ReserveCommand, reserve_stock
from warehouse.service import validate
from warehouse.service.convert import earliest_expiry, level_to_pb, reservation_to_pb, warehouse_to_pb

__all__ = ["InventoryService"]

log = logging.getLogger("kassa.warehouse")


class InventoryService(pb_grpc.InventoryServiceServicer):
    """Admin RPCs (SetStock, UpsertWarehouses) take an admin token, reservation changes a service token;
    the reads (CheckStock, BatchGetReservations, ListWarehouses) either."""

    def __init__(self, store: InventoryStore, default_ttl_seconds: int) -> None:
        self._store = store
        self._default_ttl = default_ttl_seconds

    async def CheckStock(
        self, request: pb.CheckStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckStockResponse:
        require_privileged()
        skus = validate.skus(list(request.items))
        levels = await stock_admin.check_stock(self._store, skus)
        return pb.CheckStockResponse(levels=[level_to_pb(level) for level in levels])

    async def ReserveStock(
        self, request: pb.ReserveStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveStockResponse:
        require_service()
        cmd = ReserveCommand(
            reservation_ref=validate.reference(request.reservation_ref),
            lines=validate.reserve_lines(list(request.lines)),
            ship_to_country=validate.ship_to_country(request.ship_to_country_code),
            ttl_seconds=validate.ttl_seconds(request.ttl, request.HasField("ttl"), self._default_ttl),
        )
        reservations = await reserve_stock(self._store, cmd)
        return pb.ReserveStockResponse(
            reservations=[reservation_to_pb(r) for r in reservations], expires_at=earliest_expiry(reservations)
        )

    async def BatchGetReservations(
        self, request: pb.BatchGetReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetReservationsResponse:
        require_privileged()
        ref = validate.reference(request.reservation_ref)
        reservations = await manage_reservations.get_reservations(self._store, ref)
        return pb.BatchGetReservationsResponse(reservations=[reservation_to_pb(r) for r in reservations])

    async def ExtendReservations(
        self, request: pb.ExtendReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendReservationsResponse:
        require_service()
        ref = validate.reference(request.reservation_ref)
        ttl = validate.ttl_seconds(request.ttl, request.HasField("ttl"), self._default_ttl)
        reservations = await manage_reservations.extend_reservations(self._store, ref, ttl)
        return pb.ExtendReservationsResponse(
            reservations=[reservation_to_pb(r) for r in reservations], expires_at=earliest_expiry(reservations)
        )

    async def ReleaseReservations(
        self, request: pb.ReleaseReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseReservationsResponse:
        require_service()
        ref = validate.reference(request.reservation_ref)
        reason = validate.reason(request.reason)
        reservations = await manage_reservations.release_reservations(self._store, ref)
        log.info("released reservations of %s (%s)", ref, reason or "no reason given")
        return pb.ReleaseReservationsResponse(reservations=[reservation_to_pb(r) for r in reservations])

    async def ConfirmReservations(
        self, request: pb.ConfirmReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmReservationsResponse:
        require_service()
        ref = validate.reference(request.reservation_ref)
        reservations = await manage_reservations.confirm_reservations(self._store, ref)
        return pb.ConfirmReservationsResponse(reservations=[reservation_to_pb(r) for r in reservations])

    async def SetStock(self, request: pb.SetStockRequest, context: grpc.aio.ServicerContext) -> pb.SetStockResponse:
        require_admin()
        settings = validate.stock_settings(list(request.items))
        levels = await stock_admin.set_stock(self._store, settings)
        return pb.SetStockResponse(levels=[level_to_pb(level) for level in levels])

    async def ListWarehouses(
        self, request: pb.ListWarehousesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWarehousesResponse:
        require_privileged()
        found = await stock_admin.list_warehouses(self._store)
        return pb.ListWarehousesResponse(warehouses=[warehouse_to_pb(w) for w in found])

    async def UpsertWarehouses(
        self, request: pb.UpsertWarehousesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertWarehousesResponse:
        require_admin()
        items = validate.warehouses(list(request.warehouses))
        saved = await stock_admin.upsert_warehouses(self._store, items)
        return pb.UpsertWarehousesResponse(warehouses=[warehouse_to_pb(w) for w in saved])
