// How the browser tests start Debian's Chromium (../shared/README.md has why each flag).

/** The Chromium binary: CHROMIUM, or Debian's. */
export const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

/** Headless with fake camera and microphone, plus loopback ICE candidates: the test servers
 * announce 127.0.0.1, which Chromium otherwise refuses to pair with. */
export const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  "--allow-loopback-in-peer-connection",
];
