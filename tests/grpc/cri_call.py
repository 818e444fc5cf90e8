#!/usr/bin/env python3
"""One CRI call with Python's grpcio on its defaults.

Usage: cri_call.py TARGET METHOD REQUEST_HEX [AUTHORITY]

TARGET is a grpc target such as unix:///var/run/cri-dockerd.sock. The
request and the response are serialized protobuf, in hex, so the caller
encodes and decodes them with the CRI definition it has. AUTHORITY, when
given, is set as grpc.default_authority (grpc-java and older Go clients
send the socket path there). Prints one JSON object:
{"code": "OK", "details": "...", "response": "<hex>"}.
"""
import json
import sys

import grpc


def main():
    target, method, request_hex = sys.argv[1:4]
    options = []
    if len(sys.argv) > 4:
        options.append(("grpc.default_authority", sys.argv[4]))
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method)
        try:
            response = call(bytes.fromhex(request_hex), timeout=20)
            result = {"code": "OK", "details": "", "response": response.hex()}
        except grpc.RpcError as e:
            result = {"code": e.code().name, "details": e.details(), "response": ""}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
