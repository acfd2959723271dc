#!/usr/bin/python3
"""A Subscribe client in another language that knows nothing but the .proto files.

Usage: python_subscriber.py COORDINATOR_ADDR PROTO_DIR

Compiles collector.proto with protoc into a temporary directory, subscribes to
binance_spot trades with Python's grpcio and checks that records arrive with
consecutive trade ids and decimal strings. Prints OK and exits 0 on success.
"""
import subprocess
import sys
import tempfile

coordinator, proto_dir = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
subprocess.check_call(["protoc", "-I", proto_dir, "--python_out", out, "marketprism/v1/collector.proto"])
sys.path.insert(0, out)

import grpc  # noqa: E402
from marketprism.v1 import collector_pb2 as pb  # noqa: E402

channel = grpc.insecure_channel(coordinator)
subscribe = channel.unary_stream(
    "/marketprism.v1.Collector/Subscribe",
    request_serializer=pb.SubscribeRequest.SerializeToString,
    response_deserializer=pb.MarketEvent.FromString)

ids = []
for event in subscribe(pb.SubscribeRequest(exchange="binance_spot", channel="trades", symbols=["BTCUSDT"]),
                       timeout=20):
    assert event.WhichOneof("body") == "trade", event
    assert event.symbol == "BTCUSDT" and event.node_id, event
    float(event.trade.price)  # a decimal string
    ids.append(int(event.trade.trade_id))
    if len(ids) == 20:
        break
assert ids == list(range(ids[0], ids[0] + 20)), ids
print("OK")
