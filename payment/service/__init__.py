"""gRPC servicer of kassa.payment.v1.PaymentService."""
