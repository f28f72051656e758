"""A GStreamer webrtcbin peer for the interop test (tests/tests/interop.rs), spoken to in JSON
lines like tests/interop/aiortc_peer.py. Runs with Debian's python3 (python3-gi).

    python3 webrtcbin_peer.py publish     # -> {"offer": SDP}; <- {"answer": SDP}
    python3 webrtcbin_peer.py subscribe   # <- {"subscribe": SDP}; -> {"answer": SDP}

Then: <- {"mark": true} -> {"stats": {"video": [frames decoded per video track], "audio":
[buffers decoded per audio track]}}; <- {"done": true} ends it. A publisher sends
videotestsrc as VP8 and audiotestsrc as Opus. Any failure: {"error": ...}, exit 1.

libnice leaves loopback out of its candidates; the test server listens on 127.0.0.1, so the
ICE agent is given that address (`add-local-ip-address`), as docs/interop.md tells users.
"""

import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, GObject, Gst, GstSdp, GstWebRTC  # noqa: E402

PUBLISH = """
webrtcbin name=w bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1
  ! vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=400000 ! rtpvp8pay pt=96
  ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! w.
audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc
  ! rtpopuspay pt=111
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w.
"""


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def warm_up_pad_class():
    """Makes PyGObject build its class for webrtcbin's source pads on this thread, before
    webrtcbin's streaming threads hand over their first pads at the same moment: two threads
    building it at once leave one with a class that is not a Gst.Pad ("Must be Gst.Pad, not
    GstWebRTCBinSrcPad"), seen once in CI."""
    gtype = GObject.type_from_name("GstWebRTCBinSrcPad")
    if gtype.name != "invalid":
        GObject.new(gtype, name="warm-up", direction=Gst.PadDirection.SRC)


class Peer:
    def __init__(self, role):
        self.role = role
        # Looked up here, on the main thread: PyGObject resolving a flags type's members for
        # the first time on two streaming threads at once can fail on one of them
        # ("type object 'PadProbeType' has no attribute 'BUFFER'", seen once in CI), as its
        # classes can (see warm_up_pad_class).
        self.probe_buffer = Gst.PadProbeType.BUFFER
        self.probe_ok = Gst.PadProbeReturn.OK
        self.source = Gst.PadDirection.SRC
        self.loop = GLib.MainLoop()
        self.counts = {"video": [], "audio": []}
        if role == "publish":
            self.pipe = Gst.parse_launch(PUBLISH)
            self.w = self.pipe.get_by_name("w")
        else:
            self.pipe = Gst.Pipeline.new("subscriber")
            self.w = Gst.ElementFactory.make("webrtcbin", "w")
            self.w.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipe.add(self.w)
            warm_up_pad_class()
            self.w.connect("pad-added", self.on_pad)
        # Kept for the peer's life: this PyGObject drops a reference the property getter
        # did not give it when the wrapper dies, which would free webrtcbin's agent.
        self.ice = self.w.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.w.connect("notify::ice-gathering-state", self.on_gathering)
        if role == "publish":
            self.w.connect("on-negotiation-needed", self.on_negotiation_needed)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.pending_local = False

    def fail(self, text):
        send({"error": text})
        sys.exit(1)

    def on_error(self, _bus, message):
        err, debug = message.parse_error()
        self.fail(f"{err.message} ({debug})")

    def on_negotiation_needed(self, _w):
        promise = Gst.Promise.new_with_change_func(self.on_description, "offer")
        self.w.emit("create-offer", None, promise)

    def on_description(self, promise, kind):
        promise.wait()
        reply = promise.get_reply()
        desc = reply.get_value(kind)
        self.w.emit("set-local-description", desc, Gst.Promise.new())
        self.pending_local = True
        self.maybe_send_local()

    def on_gathering(self, *_):
        self.maybe_send_local()

    def maybe_send_local(self):
        complete = self.w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE
        if not (self.pending_local and complete):
            return
        self.pending_local = False
        desc = self.w.get_property("local-description")
        key = "offer" if self.role == "publish" else "answer"
        send({key: desc.sdp.as_text()})

    def remote(self, text, kind):
        ok, sdp = GstSdp.SDPMessage.new_from_text(text)
        if ok != GstSdp.SDPResult.OK:
            self.fail("the SDP does not parse")
        sdp_type = GstWebRTC.WebRTCSDPType.ANSWER if kind == "answer" else GstWebRTC.WebRTCSDPType.OFFER
        desc = GstWebRTC.WebRTCSessionDescription.new(sdp_type, sdp)
        if kind == "answer":
            self.w.emit("set-remote-description", desc, Gst.Promise.new())
        else:
            promise = Gst.Promise.new_with_change_func(self.on_remote_offer_set, None)
            self.w.emit("set-remote-description", desc, promise)

    def on_remote_offer_set(self, promise, _):
        promise.wait()
        answer = Gst.Promise.new_with_change_func(self.on_description, "answer")
        self.w.emit("create-answer", None, answer)

    def on_pad(self, _w, pad):
        if pad.direction != self.source:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _decode, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name()
        kind = "video" if name.startswith("video") else "audio"
        slot = len(self.counts[kind])
        self.counts[kind].append(0)
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

        def count(_pad, _info):
            self.counts[kind][slot] += 1
            return self.probe_ok

        pad.add_probe(self.probe_buffer, count)

    def on_message(self, message):
        if message.get("done"):
            self.pipe.set_state(Gst.State.NULL)
            self.loop.quit()
        elif message.get("mark"):
            send({"stats": dict(self.counts)})
        elif "answer" in message:
            self.remote(message["answer"], "answer")
        elif "subscribe" in message:
            self.remote(message["subscribe"], "offer")
        return False

    def read_stdin(self):
        for line in sys.stdin:
            message = json.loads(line)
            GLib.idle_add(self.on_message, message)
        GLib.idle_add(self.loop.quit)

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        threading.Thread(target=self.read_stdin, daemon=True).start()
        self.loop.run()


if __name__ == "__main__":
    Gst.init(None)
    try:
        Peer(sys.argv[1]).run()
    except Exception as e:  # reported to the test, which fails with it
        send({"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
