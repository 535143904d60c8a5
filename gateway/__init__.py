"""The REST gateway: HTTP/JSON in front of the gRPC services, routes read from the protos' annotations."""
