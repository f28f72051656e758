// A browser peer pair for the tests (tests/src/browser.rs): Debian's Chromium, headless, with
// a fake camera. One page holds two connections, a publisher and a subscriber; the Rust test
// does the signalling with the server (the loss drill puts a lossy relay on the subscriber's
// leg; the killed-client test kills the whole browser).
//
//   node pair.mjs
//
// It speaks JSON lines: on stdout what it has for the test, on stdin what the test sends.
//   → {"offer": SDP}                     the publisher's offer
//   ← {"answer": SDP}                    the server's answer to it
//   ← {"subscribe": SDP}                 the server's offer for the subscriber
//   → {"answer": SDP}                    the subscriber's answer
//   → {"flowing": STATS}                 once the subscriber decodes video
//   ← {"mark": true}                     asks for the counters now
//   → {"stats": STATS}
//   ← {"renegotiate": SDP}               a later server offer for the subscriber
//   → {"answer": SDP}                    its answer
//   ← {"republish": SDP}                 a server offer for the publisher (its connection
//                                        moved to another server)
//   → {"answer": SDP}                    its answer
//   ← {"done": true}                     closes the browser and exits 0
// STATS: the publisher's outbound video (framesSent, framesEncoded, nackCount, pliCount,
// retransmittedPacketsSent) and the subscriber's inbound video (framesDecoded, framesDropped,
// framesReceived, freezeCount, totalFreezesDuration, nackCount, pliCount, firCount,
// packetsLost, packetsReceived), summed over tracks, videoTracks: each inbound video
// track's framesDecoded, and audioTracks: each inbound audio track's packetsReceived. The
// camera sends the fake microphone too. Any failure: a line {"error": ...} and exit 1.
//
// Environment: CHROMIUM overrides /usr/bin/chromium; PAIR_VIDEO_CODEC (H264, VP9, ...) makes
// the camera offer only that video codec.

import { chromium } from "playwright-core";
import { args, executablePath } from "./chromium.mjs";
import http from "node:http";
import readline from "node:readline";

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function receive() {
  const { value, done } = await lines.next();
  if (done) throw new Error("the test closed stdin");
  return JSON.parse(value);
}
function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

// getUserMedia needs a secure context: http://127.0.0.1 is one, about:blank is not.
const site = http.createServer((_, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><title>switchboard peer pair</title><video id=v autoplay muted playsinline></video>");
});
await new Promise((ok) => site.listen(0, "127.0.0.1", ok));

let browser;
let status = 0;
try {
  // playwright gives the browser a fresh profile of its own.
  browser = await chromium.launch({ executablePath, args });
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${site.address().port}/`);
  await page.evaluate(() => {
    const gathered = (pc) =>
      new Promise((ok) => {
        if (pc.iceGatheringState === "complete") return ok();
        pc.addEventListener("icegatheringstatechange", () => {
          if (pc.iceGatheringState === "complete") ok();
        });
      });
    window.drill = {
      async offer(codec) {
        const stream = await navigator.mediaDevices.getUserMedia({
          video: { width: 640, height: 480, frameRate: 30 },
          audio: true,
        });
        this.pub = new RTCPeerConnection();
        for (const track of stream.getTracks()) this.pub.addTrack(track, stream);
        if (codec) {
          // Offer only this video codec (PAIR_VIDEO_CODEC), to prove it end to end.
          const video = this.pub.getTransceivers().find((t) => t.sender.track?.kind === "video");
          const wanted = RTCRtpSender.getCapabilities("video").codecs.filter(
            (c) => c.mimeType.toLowerCase() === `video/${codec}`.toLowerCase(),
          );
          if (!wanted.length) throw new Error(`this browser cannot send ${codec}`);
          video.setCodecPreferences(wanted);
        }
        await this.pub.setLocalDescription(await this.pub.createOffer());
        await gathered(this.pub);
        return this.pub.localDescription.sdp;
      },
      async answered(sdp) {
        await this.pub.setRemoteDescription({ type: "answer", sdp });
      },
      async subscribe(sdp) {
        this.sub = new RTCPeerConnection();
        this.sub.ontrack = (e) => {
          if (e.track.kind === "video") document.getElementById("v").srcObject = new MediaStream([e.track]);
        };
        await this.sub.setRemoteDescription({ type: "offer", sdp });
        await this.sub.setLocalDescription(await this.sub.createAnswer());
        await gathered(this.sub);
        return this.sub.localDescription.sdp;
      },
      async renegotiate(sdp) {
        await this.sub.setRemoteDescription({ type: "offer", sdp });
        await this.sub.setLocalDescription(await this.sub.createAnswer());
        return this.sub.localDescription.sdp;
      },
      async republish(sdp) {
        await this.pub.setRemoteDescription({ type: "offer", sdp });
        await this.pub.setLocalDescription(await this.pub.createAnswer());
        return this.pub.localDescription.sdp;
      },
      async stats() {
        const pick = (report, type, keys) => {
          const out = {};
          for (const s of report.values()) {
            if (s.type === type && s.kind === "video") {
              for (const k of keys) out[k] = (out[k] || 0) + (s[k] || 0);
            }
          }
          return out;
        };
        return {
          publisher: pick(await this.pub.getStats(), "outbound-rtp", [
            "framesSent", "framesEncoded", "nackCount", "pliCount", "firCount",
            "retransmittedPacketsSent", "packetsSent",
          ]),
          subscriber: pick(await this.sub.getStats(), "inbound-rtp", [
            "framesDecoded", "framesDropped", "framesReceived", "freezeCount",
            "totalFreezesDuration", "nackCount", "pliCount", "firCount", "packetsLost",
            "packetsReceived",
          ]),
          // Each received video track on its own: frames decoded, by track id.
          videoTracks: [...(await this.sub.getStats()).values()]
            .filter((s) => s.type === "inbound-rtp" && s.kind === "video")
            .map((s) => ({ ssrc: s.ssrc, framesDecoded: s.framesDecoded || 0 })),
          // Each received audio track: packets received.
          audioTracks: [...(await this.sub.getStats()).values()]
            .filter((s) => s.type === "inbound-rtp" && s.kind === "audio")
            .map((s) => ({ ssrc: s.ssrc, packetsReceived: s.packetsReceived || 0 })),
          connections: [this.pub.connectionState, this.sub.connectionState],
        };
      },
    };
  });

  send({ offer: await page.evaluate((c) => window.drill.offer(c), process.env.PAIR_VIDEO_CODEC || "") });
  const { answer } = await receive();
  await page.evaluate((sdp) => window.drill.answered(sdp), answer);
  const { subscribe } = await receive();
  send({ answer: await page.evaluate((sdp) => window.drill.subscribe(sdp), subscribe) });
  // waitForFunction takes a promise for a truthy value, so poll getStats() here instead.
  const flowingBy = Date.now() + 30000;
  while (!((await page.evaluate(() => window.drill.stats())).subscriber.framesDecoded > 30)) {
    if (Date.now() > flowingBy) throw new Error("the subscriber decoded no video within 30 s");
    await new Promise((ok) => setTimeout(ok, 200));
  }
  send({ flowing: await page.evaluate(() => window.drill.stats()) });
  for (;;) {
    const message = await receive();
    if (message.done) break;
    if (message.mark) send({ stats: await page.evaluate(() => window.drill.stats()) });
    if (message.renegotiate) {
      send({ answer: await page.evaluate((sdp) => window.drill.renegotiate(sdp), message.renegotiate) });
    }
    if (message.republish) {
      send({ answer: await page.evaluate((sdp) => window.drill.republish(sdp), message.republish) });
    }
  }
} catch (e) {
  send({ error: String(e && e.stack ? e.stack : e) });
  status = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  site.close();
}
process.exit(status);
