"""gRPC servicers of kassa.payment.v1.PaymentService and PaymentAdminService, their request checks and conversions."""
