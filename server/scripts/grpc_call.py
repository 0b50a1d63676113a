"""grpcurl's `list` and `-d JSON TARGET SERVICE/METHOD` in Python, via server reflection (no .proto files).

    python server/scripts/grpc_call.py 127.0.0.1:8500 list                               # services
    python server/scripts/grpc_call.py 127.0.0.1:8500 list mnist_serving.v1.Classifier   # its methods
    python server/scripts/grpc_call.py 127.0.0.1:8500 mnist_serving.v1.Classifier/GetModelInfo '{}'

Calls unary methods and prints the response as JSON. Handy where grpcurl is not installed.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def list_names(database: ProtoReflectionDescriptorDatabase, service: str | None) -> list[str]:
    """The server's services, or one service's methods as SERVICE.METHOD (grpcurl's output)."""
    if service is None:
        return sorted(database.get_services())
    methods = descriptor_pool.DescriptorPool(database).FindServiceByName(service).methods
    return [method.full_name for method in methods]


def call(
    channel: grpc.Channel, pool: descriptor_pool.DescriptorPool, full_method: str, body: str, timeout: float
) -> str:
    service_name, method_name = full_method.split("/")
    method = pool.FindServiceByName(service_name).methods_by_name[method_name]
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    rpc = channel.unary_unary(
        "/" + full_method,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return json_format.MessageToJson(rpc(json_format.Parse(body, request_type()), timeout=timeout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port")
    parser.add_argument("method", help="package.Service/Method, or `list`")
    parser.add_argument(
        "body",
        nargs="?",
        default=None,
        help="the request as JSON (default {}); after `list`: a service to list the methods of",
    )
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with grpc.insecure_channel(args.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            if args.method == "list":
                print("\n".join(list_names(database, args.body)))
            else:
                print(
                    call(
                        channel, descriptor_pool.DescriptorPool(database), args.method, args.body or "{}", args.timeout
                    )
                )
        except KeyError as exc:  # reflection does not know the service or method
            print(f"error: the server has no {exc.args[0]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
