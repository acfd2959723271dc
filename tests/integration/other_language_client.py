#!/usr/bin/python3
"""A client in another language that knows nothing but the .proto files.

Usage: other_language_client.py COORDINATOR_ADDR PROTO_DIR

Compiles the protos with protoc into a temporary directory, then calls
Coordinator/Execute with Python's grpcio, checks an error code, and reaches
grpc.health.v1.Health and server reflection with hand-encoded messages.
Prints OK and exits 0 on success.
"""
import json
import subprocess
import sys
import tempfile

coordinator, proto_dir = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
subprocess.check_call(["protoc", "-I", proto_dir, "--python_out", out,
                       "marketprism/v1/common.proto", "marketprism/v1/coordinator.proto"])
sys.path.insert(0, out)

import grpc  # noqa: E402
from marketprism.v1 import coordinator_pb2 as pb  # noqa: E402
from marketprism.v1 import common_pb2  # noqa: E402

channel = grpc.insecure_channel(coordinator)
execute = channel.unary_unary(
    "/marketprism.v1.Coordinator/Execute",
    request_serializer=pb.ExecuteRequest.SerializeToString,
    response_deserializer=pb.ExecuteResponse.FromString)

request = pb.ExecuteRequest(
    exchange="binance_spot", method="GET", path="/api/v3/depth",
    query=[common_pb2.QueryParam(key="symbol", value="BTCUSDT"),
           common_pb2.QueryParam(key="limit", value="5")])
response = execute(request, timeout=10)
assert response.http_status == 200, response.http_status
book = json.loads(response.body)
assert len(book["bids"]) == 5, book
assert any(c.pool == "REQUEST_WEIGHT" and c.units == 5 for c in response.cost), response.cost
print("Execute: HTTP 200 from", response.egress_ip)

try:
    execute(pb.ExecuteRequest(exchange="nowhere", method="GET", path="/x"), timeout=5)
    sys.exit("an unknown exchange should be INVALID_ARGUMENT")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    assert "exchange" in e.details(), e.details()
    print("Execute: INVALID_ARGUMENT for a bad request:", e.details())

raw = lambda b: b  # noqa: E731
check = channel.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=raw, response_deserializer=raw)
# HealthCheckRequest{} is empty; HealthCheckResponse{status: SERVING} is 08 01.
assert check(b"", timeout=5) == b"\x08\x01"
print("grpc.health.v1: SERVING")

reflection = channel.stream_stream(
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    request_serializer=raw, response_deserializer=raw)
# ServerReflectionRequest{list_services: ""}: field 7, empty string.
listing = next(reflection(iter([b"\x3a\x00"]), timeout=5))
assert b"marketprism.v1.Coordinator" in listing, listing
print("reflection lists marketprism.v1.Coordinator")
print("OK")
