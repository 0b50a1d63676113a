"""grpcurl's `-d JSON TARGET SERVICE/METHOD` in Python, via server reflection (no .proto files).

    python server/scripts/grpc_call.py 127.0.0.1:8500 mnist_serving.v1.Classifier/GetModelInfo '{}'

For unary methods; prints the response as JSON. Handy where grpcurl is not installed.
"""
from __future__ import annotations

import argparse

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port")
    parser.add_argument("method", help="package.Service/Method")
    parser.add_argument("body", nargs="?", default="{}", help="the request as JSON (default {})")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with grpc.insecure_channel(args.target) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service_name, method_name = args.method.split("/")
        method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary("/" + args.method, request_serializer=request_type.SerializeToString,
                                  response_deserializer=response_type.FromString)
        response = rpc(json_format.Parse(args.body, request_type()), timeout=args.timeout)
        print(json_format.MessageToJson(response))


if __name__ == "__main__":
    main()
