"""kassa.payment.v1.PaymentAdminService: payment figures for operators (admins only, reads)."""

from __future__ import annotations

import grpc

from infra.auth import require_admin
from infra.pb import timestamp_to_pb
from kassa.payment.v1 import payment_admin_service_pb2 as pb
from kassa.payment.v1 import payment_admin_service_pb2_grpc as pb_grpc
from payment.biz.failure_rates import GetFailureRates
from payment.service import validation

__all__ = ["READS", "PaymentAdminServiceServicer"]

READS = ("GetPaymentFailureRates",)


class PaymentAdminServiceServicer(pb_grpc.PaymentAdminServiceServicer):
    def __init__(self, failure_rates: GetFailureRates) -> None:
        self._failure_rates = failure_rates

    async def GetPaymentFailureRates(
        self, request: pb.GetPaymentFailureRatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPaymentFailureRatesResponse:
        require_admin()
        rates = await self._failure_rates(*validation.failure_rates_window(request))
        return pb.GetPaymentFailureRatesResponse(
            start_time=timestamp_to_pb(rates.start),
            end_time=timestamp_to_pb(rates.end),
            payments=rates.payments,
            failed=rates.failed,
            failure_rate=rates.failure_rate,
            by_code=[
                pb.PaymentFailureCount(code=code, count=n, rate=rates.rate(code))
                for code, n in sorted(rates.failures_by_code.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        )
