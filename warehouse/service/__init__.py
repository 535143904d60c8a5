"""gRPC face of the warehouse: validate, convert protobuf ↔ model, call biz."""
