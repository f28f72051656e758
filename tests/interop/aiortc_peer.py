"""An aiortc peer for the interop test (tests/tests/interop.rs), spoken to in JSON lines like
tests/browser/pair.mjs.

    python aiortc_peer.py publish [CODEC]  # -> {"offer": SDP}; <- {"answer": SDP}
    python aiortc_peer.py subscribe   # <- {"subscribe": SDP}; -> {"answer": SDP}

Then: <- {"mark": true} -> {"stats": {"video": [frames decoded per video track],
"audio": [frames per audio track], "connection": state}}; <- {"done": true} ends it. A
publisher sends aiortc's own synthetic video and audio. Any failure: {"error": ...}, exit 1.
aiortc negotiates no transport-cc, so the server must write each leg's packets with exactly
the header extensions that leg negotiated. AIORTC_DEBUG=1 (or the role) logs aiortc and
aioice at debug level to standard error.
"""

import asyncio
import json
import logging
import os
import sys

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def lines():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("the test closed stdin")
        yield json.loads(line)


async def main(role):
    # max-bundle: aiortc 1.16's default (balanced) policy leaves a second m-line of a kind
    # on a transport it then discards when the offer's BUNDLE group is headed by another
    # kind, and that track never plays (docs/interop.md).
    # (A publisher keeps the default: it offers, and its offer is answered as it is.)
    policy = RTCBundlePolicy.MAX_BUNDLE if role == "subscribe" else RTCBundlePolicy.BALANCED
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=policy))
    counts = {"video": [], "audio": []}

    @pc.on("track")
    def on_track(track):
        slot = len(counts[track.kind])
        counts[track.kind].append(0)

        async def consume():
            while True:
                try:
                    await track.recv()
                except MediaStreamError:
                    return
                counts[track.kind][slot] += 1

        asyncio.ensure_future(consume())

    incoming = lines()
    if role == "publish":
        pc.addTrack(VideoStreamTrack())
        pc.addTrack(AudioStreamTrack())
        if len(sys.argv) > 2:
            # Offer only this video codec (H264, VP8), to prove it end to end.
            wanted = [
                c for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == f"video/{sys.argv[2]}".lower()
            ]
            video = next(t for t in pc.getTransceivers() if t.kind == "video")
            video.setCodecPreferences(wanted)
        await pc.setLocalDescription(await pc.createOffer())
        send({"offer": pc.localDescription.sdp})
        message = await incoming.__anext__()
        await pc.setRemoteDescription(RTCSessionDescription(message["answer"], "answer"))
    else:
        message = await incoming.__anext__()
        await pc.setRemoteDescription(RTCSessionDescription(message["subscribe"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        send({"answer": pc.localDescription.sdp})
    async for message in incoming:
        if message.get("done"):
            break
        if message.get("mark"):
            send({"stats": {**counts, "connection": pc.connectionState}})
    await pc.close()


if __name__ == "__main__":
    if os.environ.get("AIORTC_DEBUG") in ("1", sys.argv[1]):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as e:  # reported to the test, which fails with it
        send({"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
