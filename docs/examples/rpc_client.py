#!/usr/bin/env python3
"""Drive a Switchboard server through its MessagePack-RPC control socket.

Uses only the standard `msgpack` package (pip install msgpack). It creates a room, lets a
peer join, gives the peer a direct transport, lists the rooms, subscribes to the room's
events, closes the room and prints what happened.

    python3 docs/examples/rpc_client.py [HOST:PORT | unix:PATH] [TOKEN]

The address defaults to 127.0.0.1:7700; the token to $SWITCHBOARD_RPC__TOKEN. Exits with 0
on success and 1 on any error. See docs/rpc.md for every method and event.
"""

import os
import socket
import sys

import msgpack

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2


class RpcError(Exception):
    """An error the server answered with: a stable code and a message."""

    def __init__(self, error):
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")
        super().__init__(f"{self.code}: {self.message}")


class Switchboard:
    """A minimal msgpack-rpc client: one call at a time, notifications kept aside."""

    def __init__(self, address, token=None):
        if address.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(address[len("unix:"):])
        else:
            host, _, port = address.rpartition(":")
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.next_id = 0
        self.notifications = []
        if token:
            # The first request on a connection must be auth when the server has a token.
            self.call("auth", token=token)

    def call(self, method, **params):
        """Calls a method with keyword parameters and returns its result (a dict or None)."""
        msgid = self.next_id
        self.next_id += 1
        # The params convention: one map, sent here as the single element of the array.
        self.sock.sendall(msgpack.packb([REQUEST, msgid, method, [params]]))
        while True:
            message = self._read()
            if message[0] == NOTIFICATION:
                self.notifications.append(message)
                continue
            _, answered, error, result = message
            if answered != msgid:
                continue
            if error is not None:
                raise RpcError(error)
            return result

    def wait_for_event(self, name):
        """Returns the events received up to and including the first one called `name`."""
        seen = []
        while True:
            while self.notifications:
                _, method, params = self.notifications.pop(0)
                if method == "event":
                    seen.append(params[0])
                    if params[0]["event"] == name:
                        return seen
                elif method == "events.lagged":
                    print(f"  (lost {params[0]['dropped']} events)")
                elif method == "error":
                    raise RpcError(params[0])
            message = self._read()
            if message[0] == NOTIFICATION:
                self.notifications.append(message)

    def _read(self):
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self.unpacker.feed(data)

    def close(self):
        self.sock.close()


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7700"
    token = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("SWITCHBOARD_RPC__TOKEN")
    sb = Switchboard(address, token)

    info = sb.call("server.info")
    print(f"server: {info['name']} {info['version']}, {info['workers']} workers, "
          f"transports: {', '.join(info['transports'])}")

    room = sb.call("router.create")
    room_id = room["id"]
    print(f"created room {room_id} on worker {room['worker']}")

    sb.call("events.subscribe", router=room_id)
    sb.call("peer.join", router=room_id, peer="alice")
    print("peer alice joined")

    transport = sb.call("transport.create", router=room_id, kind="direct", peer="alice")
    print(f"transport {transport['id']} ({transport['kind']}) for {transport['peer']}")

    rooms = sb.call("router.list")["routers"]
    print(f"rooms: {', '.join(r['id'] for r in rooms)}")

    sb.call("router.close", router=room_id)
    print(f"closed room {room_id}")
    for event in sb.wait_for_event("router_closed"):
        details = {k: v for k, v in event.items() if k not in ("event", "router")}
        print(f"event: {event['event']} {details}")

    try:
        sb.call("router.dump", router=room_id)
    except RpcError as e:
        print(f"router.dump after close: {e}")
    sb.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RpcError) as e:
        print(f"rpc_client.py: {e}", file=sys.stderr)
        sys.exit(1)
