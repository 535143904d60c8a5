"""grpc.aio clients of the other services, implementing the biz gateways.

Every call carries a deadline and this service's credentials; a gRPC error becomes the DomainError
the callee raised (infra.grpc_errors), so OUT_OF_STOCK or PAYMENT_DECLINED reach our caller unchanged.
"""
