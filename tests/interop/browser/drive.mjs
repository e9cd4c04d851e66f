// Headless Chromium (Debian) calls the voxd playground page with a fake microphone.
//   node drive.mjs URL WAV48K SCREENSHOT [KEY]
// playwright gives each launch a new empty profile (it refuses --user-data-dir).
// Prints one JSON line: what the page showed (window.voxd) and what it heard.
import { chromium } from "playwright-core";

const [url, wav, screenshot, key = "5"] = process.argv.slice(2);
let timer;
const deadline = (ms) => new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms); });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${wav}`, "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
  ],
});
const out = { ok: false, steps: [] };
const t0 = Date.now();
const step = (name) => out.steps.push([name, Date.now() - t0]);
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  await page.goto(url);
  step("loaded");
  await page.click("#call");
  const run = async () => {
    await page.waitForFunction(() => window.voxd.callId && window.voxd.state !== "connecting", null, { timeout: 20000 });
    step("connected");
    await page.waitForFunction(() => window.voxd.transcript.some((t) => t.speaker === "caller"), null, { timeout: 30000 });
    step("caller transcript");
    await page.waitForFunction(() => window.voxd.transcript.some((t) => t.speaker === "bot" && t.text.startsWith("It's")), null, { timeout: 20000 });
    step("bot reply");
    await page.waitForFunction(() => window.voxd.maxLevel > 0.01, null, { timeout: 15000 });
    step("bot audio");
    await page.click(`#keypad button:text-is("${key}")`);
    await page.waitForFunction((k) => window.voxd.dtmf.includes(k), key, { timeout: 10000 });
    step("dtmf");
    await page.screenshot({ path: screenshot, fullPage: true });
    step("screenshot");
    await page.click("#hangup");
    await page.waitForFunction(() => window.voxd.ended !== null || window.voxd.state === "ended", null, { timeout: 10000 });
  };
  try {
    await Promise.race([run(), deadline(90000)]);
    step("ended");
    out.ok = true;
  } catch (e) {
    out.error = String(e);
  } finally {
    clearTimeout(timer);
  }
  if (!out.ok) {
    await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  }
  Object.assign(out, await page.evaluate(() => window.voxd));
  out.transcriptText = await page.textContent("#transcript");
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
