"""A Firefox ESR peer pair for the interop test (tests/tests/interop_firefox.rs), spoken to in
the JSON lines of tests/browser/pair.mjs (one page: a publishing connection with the fake
camera, a subscribing one).

    python3 firefox_peer.py NETNS HOST_IP

Firefox gathers no loopback candidates and nothing without a default route, so it runs in
the network namespace NETNS (made by the test: a veth pair whose host end is HOST_IP and a
default route to it). playwright cannot drive Debian's Firefox, so the page drives itself:
this bridge serves it on HOST_IP, hands it the test's messages through a long poll
(GET /next) and writes what it posts (POST /reply) to standard output.
"""

import collections
import ctypes
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

PAGE = r"""<!doctype html><title>switchboard firefox pair</title>
<video id=v autoplay muted></video>
<script>
// A request the network drops is tried again: the bridge puts back a message it could not
// deliver, and ignores a reply it already has (by its number).
const pause = (ms) => new Promise((ok) => setTimeout(ok, ms));
async function next() {
  for (;;) {
    try {
      const r = await fetch("/next");
      if (r.status === 200) return await r.json();
    } catch (e) {
      await pause(100);
    }
  }
}
let sent = 0;
async function reply(m) {
  const body = JSON.stringify({ seq: ++sent, message: m });
  for (let tries = 0; ; tries++) {
    try {
      const r = await fetch("/reply", { method: "POST", body });
      if (r.ok) return;
    } catch (e) {
      if (tries > 50) throw e;
    }
    await pause(100);
  }
}
function gathered(pc) {
  return new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") ok();
    });
  });
}
async function stats(pub, sub) {
  const out = { publisher: {}, subscriber: {}, videoTracks: [], audioTracks: [] };
  for (const s of (await pub.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      out.publisher.framesSent = (out.publisher.framesSent || 0) + (s.framesEncoded || 0);
    }
  }
  if (sub) {
    for (const s of (await sub.getStats()).values()) {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.audioTracks.push({ ssrc: s.ssrc, packetsReceived: s.packetsReceived || 0 });
      }
      if (s.type === "inbound-rtp" && s.kind === "video") {
        out.videoTracks.push({ ssrc: s.ssrc, framesDecoded: s.framesDecoded || 0 });
        out.subscriber.framesDecoded = (out.subscriber.framesDecoded || 0) + (s.framesDecoded || 0);
      }
    }
  }
  out.connections = [pub.connectionState, sub ? sub.connectionState : null];
  return out;
}
(async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    const pub = new RTCPeerConnection();
    for (const t of stream.getTracks()) pub.addTrack(t, stream);
    await pub.setLocalDescription(await pub.createOffer());
    await gathered(pub);
    await reply({ offer: pub.localDescription.sdp });
    const a = await next();
    await pub.setRemoteDescription({ type: "answer", sdp: a.answer });
    const s = await next();
    const sub = new RTCPeerConnection();
    sub.ontrack = (e) => {
      if (e.track.kind === "video") document.getElementById("v").srcObject = new MediaStream([e.track]);
    };
    await sub.setRemoteDescription({ type: "offer", sdp: s.subscribe });
    await sub.setLocalDescription(await sub.createAnswer());
    await gathered(sub);
    await reply({ answer: sub.localDescription.sdp });
    const by = Date.now() + 30000;
    while (!((await stats(pub, sub)).subscriber.framesDecoded > 30)) {
      if (Date.now() > by) throw new Error("the subscriber decoded no video within 30 s");
      await new Promise((ok) => setTimeout(ok, 200));
    }
    await reply({ flowing: await stats(pub, sub) });
    for (;;) {
      const m = await next();
      if (m.done) break;
      if (m.mark) await reply({ stats: await stats(pub, sub) });
    }
    pub.close();
    sub.close();
    await reply({ closed: true });
  } catch (e) {
    await reply({ error: String(e) + (e && e.stack ? "\n" + e.stack : "") });
  }
})();
</script>
"""

PREFS = """
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.devices.insecure.enabled", true);
user_pref("media.getusermedia.insecure.enabled", true);
user_pref("media.peerconnection.ice.obfuscate_host_addresses", false);
user_pref("media.autoplay.default", 0);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.enabled", false);
"""

PR_SET_PDEATHSIG = 1

inbox = collections.deque()
arrived = threading.Condition()
replies_seen = set()


def out(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        message = None
        if self.path == "/next":
            with arrived:
                arrived.wait_for(lambda: inbox, timeout=20)
                message = inbox.popleft() if inbox else None
            body = json.dumps(message).encode() if message is not None else b"{}"
            status = 200 if message is not None else 204
            kind = "application/json"
        else:
            body, status, kind = PAGE.encode(), 200, "text/html"
        try:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The page gave up on this request: it asks again, and gets the same message.
            if message is not None:
                with arrived:
                    inbox.appendleft(message)
                    arrived.notify()

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        envelope = json.loads(self.rfile.read(length))
        try:
            self.send_response(204)
            self.end_headers()
        except OSError:
            pass
        with arrived:
            if envelope["seq"] in replies_seen:
                return
            replies_seen.add(envelope["seq"])
        message = envelope["message"]
        if message.get("closed"):
            done.set()
        else:
            out(message)


done = threading.Event()


def main():
    netns, host = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="switchboard-firefox-")
    with open(os.path.join(profile, "user.js"), "w") as f:
        f.write(PREFS)
    url = f"http://{host}:{server.server_address[1]}/"
    env = dict(os.environ, MOZ_HEADLESS="1")
    # In this process's group (the test kills the group when it drops the peer), and killed
    # with this process should it die first.
    firefox = subprocess.Popen(
        ["ip", "netns", "exec", netns, "firefox-esr", "--headless", "--no-remote",
         "--profile", profile, url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL),
    )
    try:
        for line in sys.stdin:
            message = json.loads(line)
            with arrived:
                inbox.append(message)
                arrived.notify()
            if message.get("done"):
                done.wait(timeout=10)
                break
    finally:
        firefox.kill()
        firefox.wait()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # reported to the test, which fails with it
        out({"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
