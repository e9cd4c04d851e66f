// voxd playground: one WebRTC call to the agent named in the URL (/talk/<agent>).
// The token comes from ?token=... (minted by your backend) or, on this machine, from
// POST /talk/<agent>/token. window.voxd exposes the call's state for tests.
"use strict";
const agent = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const $ = (id) => document.getElementById(id);
const voxd = (window.voxd = { state: "idle", callId: null, transcript: [], dtmf: [], maxLevel: 0, ended: null, error: null,
  trickled: 0, trickleDone: false });
let pc = null;
let channel = null;
let audioCtx = null;

$("agent").textContent = agent;

function setStatus(text) {
  voxd.state = text;
  $("status").textContent = text;
}

function addLine(cls, text) {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text;
  $("transcript").appendChild(li);
}

async function getToken() {
  const given = new URLSearchParams(location.search).get("token");
  if (given) return given;
  const r = await fetch(`/talk/${encodeURIComponent(agent)}/token`, { method: "POST" });
  if (!r.ok) throw new Error(`no token: ${await r.text()}`);
  return (await r.json()).token;
}

// Trickle ICE: the offer goes out at once and our candidates follow as the browser
// finds them, posted to the URL the answer names (queued until the answer arrives).
// Returns the function that hands it that URL and token.
function trickle(conn) {
  const queue = [];
  let target = null;
  let sending = Promise.resolve();
  const flush = () => {
    if (!target || !queue.length) return;
    const batch = queue.splice(0);
    const candidates = batch.filter((c) => c !== null);
    const done = candidates.length < batch.length;
    const { url, token } = target;
    sending = sending
      .then(() => fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ candidates, done }),
      }))
      .then((r) => {
        if (!r.ok) return;
        voxd.trickled += candidates.length;
        if (done) voxd.trickleDone = true;
      })
      .catch(() => {}); // the call may already be over; ICE goes on with what it has
  };
  conn.addEventListener("icecandidate", (ev) => {
    queue.push(ev.candidate && ev.candidate.candidate ? ev.candidate.toJSON() : null);
    flush();
  });
  return (ice) => {
    target = { url: ice.candidates_url, token: ice.token };
    flush();
  };
}

function watchLevel(stream) {
  audioCtx = new AudioContext();
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  audioCtx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const tick = () => {
    if (!pc) return;
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    voxd.maxLevel = Math.max(voxd.maxLevel, rms);
    $("level").value = rms;
    setTimeout(tick, 50);
  };
  tick();
}

function onMessage(ev) {
  const msg = JSON.parse(ev.data);
  if (msg.type === "started") {
    voxd.callId = msg.call_id;
    setStatus("connected");
  } else if (msg.type === "state") {
    setStatus(msg.state);
  } else if (msg.type === "transcript") {
    voxd.transcript.push(msg);
    addLine(msg.speaker + (msg.interrupted ? " interrupted" : ""), msg.text + (msg.interrupted ? " …" : ""));
  } else if (msg.type === "dtmf") {
    voxd.dtmf.push(msg.digit);
    addLine("event", `key ${msg.digit}`);
  } else if (msg.type === "end") {
    voxd.ended = msg.reason;
    addLine("event", `call ended (${msg.reason})`);
    finish();
  } else if (msg.type === "error") {
    voxd.error = msg.message;
  }
}

async function call() {
  $("call").disabled = true;
  voxd.ended = null;
  try {
    setStatus("connecting");
    const token = await getToken();
    const ice = await (await fetch("/webrtc/ice")).json();
    const mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    pc = new RTCPeerConnection({ iceServers: ice.ice_servers });
    channel = pc.createDataChannel("voxd");
    channel.onmessage = onMessage;
    for (const track of mic.getTracks()) pc.addTrack(track, mic);
    pc.ontrack = (ev) => {
      const stream = ev.streams[0] || new MediaStream([ev.track]);
      $("remote").srcObject = stream;  // Chromium feeds Web Audio from a remote stream only while it plays
      watchLevel(stream);
    };
    pc.onconnectionstatechange = () => {
      if (pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) finish();
    };
    const candidatesTo = trickle(pc);
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch("/webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, agent, token }),
    });
    if (!r.ok) throw new Error(await r.text());
    const answer = await r.json();
    voxd.callId = answer.call_id;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    candidatesTo(answer.ice);
    $("hangup").disabled = false;
  } catch (e) {
    voxd.error = String(e);
    setStatus(`error: ${e.message || e}`);
    finish();
  }
}

function hangup() {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "hangup" }));
  setTimeout(finish, 300);
}

function finish() {
  if (pc) pc.close();
  pc = null;
  channel = null;
  if (audioCtx) audioCtx.close();
  audioCtx = null;
  $("call").disabled = false;
  $("hangup").disabled = true;
  if (!voxd.state.startsWith("error")) setStatus("ended");
}

$("call").addEventListener("click", call);
$("hangup").addEventListener("click", hangup);
for (const key of document.querySelectorAll("#keypad button")) {
  key.addEventListener("click", () => {
    if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "dtmf", digit: key.textContent }));
  });
}
