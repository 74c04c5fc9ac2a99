#!/usr/bin/env python3
"""A small ADS server for meshward's xDS client tests, on grpcio + xds-protos (Envoy's own
generated discovery services), so that the protocol stack under test is not meshward's.

Serves DeltaAggregatedResources and StreamAggregatedResources on 127.0.0.1:PORT, in plaintext
or, with --tls-cert and --tls-key, over TLS. With --hold it takes commands but opens the port
only on {"op": "serve"}: a restarted control plane that has its resources before any client
can connect.

Commands arrive on stdin, one JSON object a line:
  {"op": "set", "seq": N, "type_url": T,
   "resources": [{"name": n, "version": v, "value_hex": h, "any_type_url": optional}],
   "remove": [names]}
      Adds or replaces resources of type T, removes others, and pushes the change to every
      stream subscribed to T (delta: what changed; SotW: the whole set).
  {"op": "unsolicited", "seq": N, "type_url": T}
      Sends every stream a response of type T, subscribed or not.
  {"op": "serve", "seq": N}
      With --hold: starts serving (emits "listening" before "done").

Events go to stdout, one JSON object a line:
  {"event": "held"}                 (with --hold, before the port is opened)
  {"event": "listening", "port": P}
  {"event": "done", "seq": N}
  {"event": "stream", "mode": "delta"|"sotw", "stream": id, "state": "open"|"closed"}
  {"event": "request", "mode", "stream", "type_url", "kind": "subscribe"|"ack"|"nack",
   "nonce", "error_detail", "error_code", "initial_resource_versions", "version_info",
   "node_id", "node_metadata", "response_version"}
"""

import argparse
import json
import queue
import sys
import threading
from concurrent import futures

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

LOCK = threading.Lock()
OUT_LOCK = threading.Lock()


def emit(event):
    with OUT_LOCK:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class State:
    """Resources by type: name -> (version, Any). One counter per type names SotW versions."""

    def __init__(self):
        self.resources = {}
        self.versions = {}
        self.streams = {}
        self.next_stream = 1

    def type_version(self, type_url):
        return str(self.versions.get(type_url, 0))


STATE = State()


class Stream:
    def __init__(self, mode):
        self.mode = mode
        self.queue = queue.Queue()
        self.id = STATE.next_stream
        STATE.next_stream += 1
        self.nonce = 0
        # type_url -> {name: version} the client holds (delta), or True (SotW subscribed)
        self.subscribed = {}
        # nonce -> version of the response it belongs to
        self.sent = {}

    def next_nonce(self, version):
        self.nonce += 1
        nonce = f"{self.id}-{self.nonce}"
        self.sent[nonce] = version
        return nonce

    def send_delta(self, type_url, initial=False, force=False):
        held = self.subscribed[type_url]
        current = STATE.resources.get(type_url, {})
        changed = [n for n, (v, _) in current.items() if held.get(n) != v]
        removed = [n for n in held if n not in current]
        if not (changed or removed or initial or force):
            return
        version = STATE.type_version(type_url)
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=self.next_nonce(version),
            removed_resources=removed,
        )
        for name in changed:
            v, any_msg = current[name]
            response.resources.add(name=name, version=v, resource=any_msg)
        self.subscribed[type_url] = {n: v for n, (v, _) in current.items()}
        self.queue.put(response)

    def send_sotw(self, type_url):
        current = STATE.resources.get(type_url, {})
        version = STATE.type_version(type_url)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=self.next_nonce(version)
        )
        for name in current:
            response.resources.append(current[name][1])
        self.queue.put(response)

    def push(self, type_url):
        if type_url not in self.subscribed:
            return
        if self.mode == "delta":
            self.send_delta(type_url)
        else:
            self.send_sotw(type_url)


def node_fields(node):
    metadata = {}
    if node is not None and node.HasField("metadata"):
        for key, value in node.metadata.fields.items():
            metadata[key] = value.string_value
    return (node.id if node is not None else ""), metadata


def record(stream, request, kind, extra):
    node_id, metadata = node_fields(request.node if request.HasField("node") else None)
    event = {
        "event": "request",
        "mode": stream.mode,
        "stream": stream.id,
        "type_url": request.type_url,
        "kind": kind,
        "nonce": request.response_nonce,
        "response_version": stream.sent.get(request.response_nonce),
        "error_detail": request.error_detail.message if request.HasField("error_detail") else None,
        "error_code": request.error_detail.code if request.HasField("error_detail") else None,
        "node_id": node_id,
        "node_metadata": metadata,
    }
    event.update(extra)
    emit(event)


def handle_delta(stream, request):
    with LOCK:
        type_url = request.type_url
        if request.response_nonce:
            kind = "nack" if request.HasField("error_detail") else "ack"
            record(stream, request, kind, {})
            return
        initial = dict(request.initial_resource_versions)
        record(
            stream,
            request,
            "subscribe",
            {
                "initial_resource_versions": initial,
                "subscribe": list(request.resource_names_subscribe),
            },
        )
        stream.subscribed[type_url] = initial
        stream.send_delta(type_url, initial=True)


def handle_sotw(stream, request):
    with LOCK:
        type_url = request.type_url
        if request.response_nonce:
            kind = "nack" if request.HasField("error_detail") else "ack"
            record(stream, request, kind, {"version_info": request.version_info})
            return
        record(
            stream,
            request,
            "subscribe",
            {"version_info": request.version_info, "resource_names": list(request.resource_names)},
        )
        stream.subscribed[type_url] = True
        stream.send_sotw(type_url)


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def _serve(self, mode, handler, request_iterator, context):
        with LOCK:
            stream = Stream(mode)
            STATE.streams[stream.id] = stream
        emit({"event": "stream", "mode": mode, "stream": stream.id, "state": "open"})

        def read():
            try:
                for request in request_iterator:
                    handler(stream, request)
            except Exception:  # the client went away
                pass
            stream.queue.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                item = stream.queue.get()
                if item is None:
                    break
                yield item
        finally:
            with LOCK:
                STATE.streams.pop(stream.id, None)
            emit({"event": "stream", "mode": mode, "stream": stream.id, "state": "closed"})

    def DeltaAggregatedResources(self, request_iterator, context):
        yield from self._serve("delta", handle_delta, request_iterator, context)

    def StreamAggregatedResources(self, request_iterator, context):
        yield from self._serve("sotw", handle_sotw, request_iterator, context)


def apply_set(command):
    type_url = command["type_url"]
    with LOCK:
        resources = STATE.resources.setdefault(type_url, {})
        for r in command.get("resources", []):
            any_msg = any_pb2.Any(
                type_url=r.get("any_type_url") or type_url, value=bytes.fromhex(r["value_hex"])
            )
            resources[r["name"]] = (r["version"], any_msg)
        for name in command.get("remove", []):
            resources.pop(name, None)
        STATE.versions[type_url] = STATE.versions.get(type_url, 0) + 1
        for stream in STATE.streams.values():
            stream.push(type_url)


def apply_unsolicited(command):
    type_url = command["type_url"]
    with LOCK:
        for stream in STATE.streams.values():
            if stream.mode == "delta":
                stream.subscribed.setdefault(type_url, {})
                stream.send_delta(type_url, force=True)
            else:
                stream.send_sotw(type_url)


def serve(args):
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_send_message_length", 256 << 20)],
    )
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Ads(), server)
    address = f"127.0.0.1:{args.port}"
    if args.tls_cert:
        with open(args.tls_key, "rb") as key, open(args.tls_cert, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        emit({"event": "error", "message": f"cannot listen on 127.0.0.1:{args.port}"})
        sys.exit(1)
    server.start()
    emit({"event": "listening", "port": port})
    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS instead of plaintext")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--hold", action="store_true", help="open the port on {\"op\": \"serve\"}")
    args = parser.parse_args()
    server = None
    if args.hold:
        emit({"event": "held"})
    else:
        server = serve(args)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command["op"] == "set":
            apply_set(command)
        elif command["op"] == "unsolicited":
            apply_unsolicited(command)
        elif command["op"] == "serve":
            if server is None:
                server = serve(args)
        else:
            emit({"event": "error", "message": f"unknown op {command['op']}"})
            continue
        emit({"event": "done", "seq": command.get("seq")})
    # stdin closed: the test is over.
    if server is not None:
        server.stop(grace=0)


if __name__ == "__main__":
    main()
