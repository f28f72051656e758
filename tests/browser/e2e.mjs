// End-to-end check of the demo page with a real browser: Debian's Chromium, headless, with
// fake camera and microphone.
//
//   node e2e.mjs URL
//
// Opens the demo page twice (two participants in the demo room) and waits until each page's
// receive connection decodes video frames and receives audio from the other; then closes the
// second page and waits until the first has removed its video. Prints one line of JSON with
// what each page had received and exits 0; on failure or timeout prints the same JSON plus
// the pages' console output to stderr and exits 1. The Rust test
// examples/demo/tests/browser.rs runs it against an in-process server.
//
// Environment: E2E_TIMEOUT_MS (default 40000) bounds the wait; CHROMIUM overrides
// /usr/bin/chromium.

import { chromium } from "playwright-core";
import { args, executablePath } from "./chromium.mjs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const url = process.argv[2];
if (!url) {
  console.error("usage: node e2e.mjs URL");
  process.exit(2);
}
const timeoutMs = Number(process.env.E2E_TIMEOUT_MS || 40000);

// Runs in the page: what its receive connection got, from getStats(), and its state.
async function sample() {
  const d = window.demo;
  const out = {
    peer: d.peer,
    room: d.room,
    websocket: d.ws ? ["connecting", "open", "closing", "closed"][d.ws.readyState] : null,
    send: d.sendPc ? d.sendPc.connectionState : null,
    receive: d.recvPc ? d.recvPc.connectionState : null,
    errors: d.errors,
    signalling: d.signalling,
    remoteStreams: [...d.remotes.values()].map(({ stream }) =>
      stream.getTracks().map((t) => t.kind).sort()),
    video: { streams: 0, framesDecoded: 0, packetsReceived: 0, bytesReceived: 0 },
    audio: { streams: 0, packetsReceived: 0, bytesReceived: 0 },
  };
  if (d.recvPc) {
    const stats = await d.recvPc.getStats();
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp" || !out[s.kind]) return;
      const k = out[s.kind];
      k.streams += 1;
      k.packetsReceived += s.packetsReceived || 0;
      k.bytesReceived += s.bytesReceived || 0;
      if (s.kind === "video") k.framesDecoded += s.framesDecoded || 0;
    });
  }
  return out;
}

// Runs in the page: true once the other participant's video decodes and its audio arrives.
async function receiving() {
  const d = window.demo;
  if (!d || !d.recvPc) return false;
  let frames = 0;
  let audio = 0;
  const stats = await d.recvPc.getStats();
  stats.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") frames += s.framesDecoded || 0;
    if (s.kind === "audio") audio += (s.packetsReceived || 0) + (s.bytesReceived || 0);
  });
  return frames > 0 && audio > 0;
}

// Resolves once `check` (run in every page) holds in all of them; polls every 200 ms and
// throws past the deadline with what the pages last answered. (page.waitForFunction would
// take the promise an async predicate returns for a truthy answer.)
async function untilAll(pages, check, deadline, what) {
  for (;;) {
    const answers = await Promise.all(pages.map((page) => page.evaluate(check)));
    if (answers.every(Boolean)) {
      return;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out waiting until ${what}: ${JSON.stringify(answers)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// Runs in the page: true once it has answered an offer for its receive connection.
function answeredAnOffer() {
  const d = window.demo;
  return Boolean(d && d.signalling.some((m) => m.direction === "out" && m.type === "answer"));
}

// What each open page reports, or why it could not be read.
async function samples(pages) {
  try {
    return await Promise.all(pages.filter((page) => !page.isClosed()).map((page) => page.evaluate(sample)));
  } catch (e) {
    return `cannot read the pages: ${e.message}`;
  }
}

const started = Date.now();
const summary = { url, ok: false };
const deadline = started + timeoutMs;
const userDataDir = await mkdtemp(path.join(tmpdir(), "switchboard-e2e-"));
const consoles = [[], []];
let context;
let pages = [];
let error = null;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args,
  });
  pages = [context.pages()[0] || (await context.newPage()), await context.newPage()];
  pages.forEach((page, i) => {
    page.on("console", (m) => consoles[i].push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoles[i].push(`pageerror: ${e.message}`));
  });
  // One after the other: the first page is alone when it subscribes (an offer without
  // tracks), so the second page's tracks reach it through renegotiation_needed, and the
  // second page's first offer already carries the first page's tracks.
  for (const [i, page] of pages.entries()) {
    await page.goto(url, { timeout: timeoutMs });
    await untilAll([page], answeredAnOffer, deadline, `page ${i + 1} answered an offer`);
  }
  await untilAll(pages, receiving, deadline, "both pages receive video and audio");
  summary.receivingMs = Date.now() - started;
  summary.pages = await samples(pages);
  // The second participant leaves: its video must go from the first page.
  await pages[1].close();
  await untilAll([pages[0]], () => window.demo.remotes.size === 0, deadline,
    "page 1 removed page 2's video");
  summary.leftMs = Date.now() - started;
} catch (e) {
  error = e;
}

summary.ok = error === null;
if (error) {
  summary.pages = await samples(pages);
}
if (error) {
  summary.error = String(error.message || error);
}
if (context) {
  await context.close().catch(() => {});
}
await rm(userDataDir, { recursive: true, force: true }).catch(() => {});

console.log(JSON.stringify(summary));
if (error) {
  console.error(`e2e failed: ${summary.error}`);
  consoles.forEach((lines, i) => {
    console.error(`--- page ${i + 1} console ---`);
    for (const line of lines) console.error(line);
  });
}
process.exit(error ? 1 : 0);
