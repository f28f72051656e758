#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (fuzz/corpus/<target>/) from real inputs:
the SDP fixtures of real stacks, RTP of media ffmpeg encodes (VP8, VP9, H.264, Opus),
MessagePack-RPC requests, STUN binding requests and RTCP feedback. Run it from anywhere;
it needs ffmpeg and the msgpack package. The fuzzer adds what it finds to the same folders
when run by hand (scripts/fuzz keeps only the seeds in git)."""

import os, struct, subprocess, tempfile, zlib, hashlib

import msgpack

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- rpc_frame: MessagePack-RPC as a backend sends it
requests = [
    [0, 1, "auth", [{"token": "0123456789abcdef0123"}]],
    [0, 2, "server.info", []],
    [0, 3, "router.create", [{"codecs": None, "auto_subscribe": True}]],
    [0, 4, "peer.join", [{"router": "10f3a1c2-0000-4000-8000-000000000001", "peer": "alice"}]],
    [0, 5, "webrtc.publish", [{"router": "10f3a1c2-0000-4000-8000-000000000001", "peer": "alice", "sdp": "v=0\r\n"}]],
    [2, "events.subscribe", [{"router": None}]],
    [0, 6, "transport.request", [{"transport": "x", "method": "offer", "params": {"sdp": "v=0", "nested": [[1, [2, [3]]]]}}]],
]
put("rpc_frame", "session", b"".join(msgpack.packb(r) for r in requests))
for i, r in enumerate(requests):
    put("rpc_frame", f"request-{i}", msgpack.packb(r))
put("rpc_frame", "http", b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n\r\n")
put("rpc_frame", "not-a-request", msgpack.packb([1, 2, None, {"a": 1.5, "b": b"bin"}]))

# --- sdp: offers and answers of real stacks
sdp_dir = os.path.join(ROOT, "..", "core", "sdp", "tests", "sdp")
for name in sorted(os.listdir(sdp_dir)):
    with open(os.path.join(sdp_dir, name), "rb") as f:
        put("sdp", name, f.read())


# --- RTP of real encodings
def rtp(pt, seq, ts, ssrc, payload, marker=False, ext=None):
    first = 0x80 | (0x10 if ext else 0)
    hdr = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    if ext:
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in ext)
        body += b"\0" * (-len(body) % 4)
        hdr += struct.pack("!HH", 0xBEDE, len(body) // 4) + body
    return hdr + payload


def ffmpeg(args, suffix):
    out = tempfile.NamedTemporaryFile(suffix=suffix, delete=False).name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y"] + args + [out], check=True)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def ivf_frames(data):
    frames, i = [], 32
    while i + 12 <= len(data):
        size = struct.unpack("<I", data[i:i + 4])[0]
        frames.append(data[i + 12:i + 12 + size])
        i += 12 + size
    return frames


src = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-frames:v", "4"]
vp8 = ivf_frames(ffmpeg(src + ["-c:v", "libvpx", "-g", "3", "-f", "ivf"], ".ivf"))
vp9 = ivf_frames(ffmpeg(src + ["-c:v", "libvpx-vp9", "-g", "3", "-f", "ivf"], ".ivf"))
h264 = ffmpeg(src + ["-c:v", "libx264", "-g", "3", "-bsf:v", "h264_mp4toannexb", "-f", "h264"], ".h264")


def chunks(frame, size=900):
    return [frame[i:i + size] for i in range(0, len(frame), size)] or [b""]


def vp8_payloads(frame):
    parts = chunks(frame)
    return [(bytes([0x10 if i == 0 else 0x00]) + p, i == len(parts) - 1) for i, p in enumerate(parts)]


def vp9_payloads(frame):
    parts = chunks(frame)
    out = []
    for i, p in enumerate(parts):
        flags = (0x08 if i == 0 else 0) | (0x04 if i == len(parts) - 1 else 0)
        out.append((bytes([flags]) + p, i == len(parts) - 1))
    return out


def nal_units(stream):
    units, i = [], 0
    starts = []
    while True:
        j = stream.find(b"\0\0\1", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(stream)
        units.append(stream[s:e].rstrip(b"\0"))
    return units


def h264_payloads(stream):
    out = []
    units = nal_units(stream)
    for u in units:
        if len(u) <= 900:
            out.append((u, (u[0] & 0x1F) in (1, 5)))
        else:
            head, body = u[0], u[1:]
            parts = chunks(body)
            for i, p in enumerate(parts):
                fu_ind = (head & 0xE0) | 28
                fu_hdr = (head & 0x1F) | (0x80 if i == 0 else 0) | (0x40 if i == len(parts) - 1 else 0)
                out.append((bytes([fu_ind, fu_hdr]) + p, i == len(parts) - 1))
    # One STAP-A with the parameter sets, as browsers send them.
    small = [u for u in units if (u[0] & 0x1F) in (7, 8)]
    if small:
        stap = bytes([0x78]) + b"".join(struct.pack("!H", len(u)) + u for u in small)
        out.insert(0, (stap, False))
    return out


def depacketizer_input(codec, payloads):
    out = bytearray([codec])
    last_marker = True
    for p, marker in payloads:
        flags = (1 if marker else 0) | (2 if last_marker else 0)
        out += struct.pack("!H", len(p)) + bytes([flags]) + p
        last_marker = marker
    return bytes(out)


put("depacketizers", "vp8", depacketizer_input(0, [x for f in vp8 for x in vp8_payloads(f)]))
put("depacketizers", "vp9", depacketizer_input(1, [x for f in vp9 for x in vp9_payloads(f)]))
put("depacketizers", "h264", depacketizer_input(2, h264_payloads(h264)))
opus = [bytes([0xFC]) + os.urandom(0)[:0] + bytes(range(40)), bytes([0x78, 0x01]) + bytes(60), bytes([0x03, 0x83]) + bytes(30)]
put("depacketizers", "opus", depacketizer_input(3, [(p, True) for p in opus]))

# --- forwarder: RTP from the publisher, RTCP both ways
def route(kind, datagram, subscriber=0):
    return bytes([kind | (subscriber << 7), len(datagram) & 0xFF, (len(datagram) >> 8) & 0x07]) + datagram


packets = []
seq, ts = 100, 0
for f in vp8:
    for p, marker in vp8_payloads(f):
        packets.append(route(0, rtp(96, seq, ts, 0x1111, p, marker, ext=[(4, b"0"), (3, b"\x00\x01")])))
        seq += 1
    ts += 9000
packets.append(route(1, rtp(97, 7, ts, 0x2222, struct.pack("!H", 101) + vp8_payloads(vp8[0])[0][0])))
sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0x1111, 0xE000_0000, 0, ts, 40, 40000)
packets.append(route(2, sr))
nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 0x5000, 0x5000, 101, 0xFFFF)
pli = struct.pack("!BBHII", 0x81, 206, 2, 0x5000, 0x5000)
fir = struct.pack("!BBHIIIBBH", 0x84, 206, 4, 0x5000, 0, 0x5000, 1, 0, 0)
rr = struct.pack("!BBHIIIIIII", 0x81, 201, 7, 0x9999, 0x5000, 0x0100_0002, 104, 10, 0, 0)
packets += [route(3, nack), route(3, pli), route(3, fir, 1), route(3, rr + nack + pli)]
put("forwarder", "session", b"".join(packets))
put("forwarder", "nack-storm", route(0, rtp(96, 1, 0, 0x1111, b"\x10\x00" + bytes(100), True)) + route(3, struct.pack("!BBHII", 0x81, 205, 2 + 40, 0x5000, 0x5000) + struct.pack("!HH", 1, 0xFFFF) * 40))

# --- stun_demux: binding requests as browsers send them
def stun(username, integrity=True):
    attrs = b""
    u = username.encode()
    attrs += struct.pack("!HH", 0x0006, len(u)) + u + b"\0" * (-len(u) % 4)
    attrs += struct.pack("!HHI", 0x0024, 4, 0x6E7F1EFF)  # PRIORITY
    attrs += struct.pack("!HH", 0x0025, 0)  # USE-CANDIDATE
    attrs += struct.pack("!HHQ", 0x802A, 8, 0x1234)  # ICE-CONTROLLING
    if integrity:
        attrs += struct.pack("!HH", 0x0008, 20) + bytes(20)
    attrs += struct.pack("!HHI", 0x8028, 4, 0)  # FINGERPRINT (not checked here)
    return struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + hashlib.sha1(u).digest()[:12] + attrs


put("stun_demux", "binding", stun("srvufrag:cliufrag"))
put("stun_demux", "no-integrity", stun("srv:cli", integrity=False))
put("stun_demux", "dtls-hello", bytes([0x16, 0xFE, 0xFD]) + bytes(60))
