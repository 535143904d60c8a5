"""gRPC servicers: protobuf ↔ domain, then the use case. Nothing else."""
