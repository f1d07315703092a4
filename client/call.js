// The call page: joins a room as a viewer, sends this browser's camera to the sender agent
// (loopback, same machine), shows every reconstructed face with its live figures.
"use strict";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "demo";
let token = params.get("token") || "";
try { // the token leaves the address bar and history; this tab keeps it for a reload
  if (token) sessionStorage.setItem("talkcodec-token:" + room, token);
  else token = sessionStorage.getItem("talkcodec-token:" + room) || "";
} catch (e) { /* no storage: a reload needs the full URL again */ }
if (params.has("token")) {
  params.delete("token");
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
}
const me = "viewer-" + Math.random().toString(36).slice(2, 8);
// Without &name= each page gets its own name (two bare URLs were both "guest").
const label = (params.get("name") || "guest-" + me.slice(-4)).slice(0, 64);
const wantCamera = params.get("camera") !== "0";
const statusEl = document.getElementById("status");
const tiles = new Map(); // session -> tile state
const peers = new Map(); // peer id -> {role, label}
let ws = null;
let iceServers = [];
let cameraStream = null;
let cameraPc = null;
let cameraRetry = null; // timer of the next camera reconnection
let left = false; // the person pressed "Leave"
const CAMERA_RETRY_MS = 2000;
const CAMERA_OVERLAP_MS = 3000; // the old camera connection after a new one was offered
const STALE_VIEW_MS = 15000; // a view not offered again this long after a rejoin, not playing
// A view its worker ended ("bye") keeps its tile and last picture this long: a rejoin or a
// receiver handing over offers the same session again, and the face comes back in place.
const VIEW_BYE_GRACE_MS = 5000;
// The camera only feeds the local agent's face tracker: a 640x480 stream at ~0.5 Mbit/s is
// plenty, and each RTP packet costs the agent's event loop (docs/CALL.md, Long calls).
const CAMERA_MAX_BITRATE = 500000;

// Figures for people and for the end-to-end test.
window.talkcodec = { me, label, tiles: {}, camera: "off", cameraEnds: 0, muted: false };

function setStatus(text) { statusEl.textContent = text; }

function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }

function signal(to, data) { send({ type: "signal", to, data }); }

async function gathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // use what we have
  });
}

// ---- the camera -> the local sender agent ---------------------------------------------
async function startCamera() {
  if (!wantCamera) return;
  try {
    cameraStream = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 480, frameRate: 25 }, audio: true,
    });
    const selfVideo = document.getElementById("self");
    selfVideo.srcObject = cameraStream;
    const countSelf = () => { // frames of the own camera tile (the soak checks it moves)
      window.talkcodec.selfFrames = (window.talkcodec.selfFrames || 0) + 1;
      selfVideo.requestVideoFrameCallback(countSelf);
    };
    selfVideo.requestVideoFrameCallback(countSelf);
    cameraStream.getTracks().forEach((t) => t.addEventListener("ended", () => {
      window.talkcodec.cameraTrackEnded = t.kind;
      if (!left) setCameraState("Your " + t.kind + " device stopped.");
    }));
    window.talkcodec.camera = "ready";
  } catch (err) {
    window.talkcodec.camera = "unavailable";
    setCameraState("No camera: " + err.name);
  }
}

async function sendCamera() {
  if (!cameraStream || cameraPc || left) return;
  const agent = params.get("agent") ||
    [...peers.entries()].find(([, p]) => p.role === "agent")?.[0];
  if (!agent) {
    setCameraState("No sender agent in this room: run `talkcodec send --agent` on this machine.");
    return;
  }
  const pc = new RTCPeerConnection({ iceServers });
  cameraPc = pc;
  pc.talkcodecAgent = agent;
  for (const track of cameraStream.getTracks()) {
    const init = { direction: "sendonly", streams: [cameraStream] };
    if (track.kind === "video") init.sendEncodings = [{ maxBitrate: CAMERA_MAX_BITRATE }];
    pc.addTransceiver(track, init);
  }
  const session = "camera:" + me;
  pc.addEventListener("connectionstatechange", () => {
    if (cameraPc !== pc) return;
    window.talkcodec.camera = pc.connectionState;
    if (pc.connectionState === "connected") setCameraState("camera -> sender agent '" + agent + "'");
    else if (pc.connectionState === "failed") cameraEnded("the connection failed");
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  if (cameraPc !== pc) return; // ended while gathering
  signal(agent, { session, kind: "offer", sdp: pc.localDescription.sdp });
  setCameraState("connecting the camera to sender agent '" + agent + "'…");
}

// After signalling came back: offer the camera again at once (the agent replaces its
// session); the old connection plays until the new one is up.
function restartCamera() {
  const old = cameraPc;
  cameraPc = null;
  sendCamera().then(() => { if (old) setTimeout(() => old.close(), CAMERA_OVERLAP_MS); })
    .catch(() => { if (old) old.close(); cameraEnded("offer failed"); });
}

// The camera's link to the agent ended (the agent said bye, the connection failed, the
// agent left): say so and connect again.
function cameraEnded(why) {
  if (!cameraPc) return;
  cameraPc.close();
  cameraPc = null;
  window.talkcodec.camera = "ended";
  window.talkcodec.cameraEnds += 1;
  if (left) return;
  setCameraState("The camera's link ended (" + why + "); reconnecting…");
  clearTimeout(cameraRetry);
  cameraRetry = setTimeout(() => { sendCamera().catch(() => cameraEnded("offer failed")); },
    CAMERA_RETRY_MS);
}

function setCameraState(text) { document.getElementById("camera-state").textContent = text; }

// ---- reconstructed faces from the receiver worker -------------------------------------
function newTile(session) {
  const node = document.getElementById("tile").content.firstElementChild.cloneNode(true);
  document.getElementById("remote").appendChild(node);
  document.getElementById("empty").hidden = true;
  const tile = {
    node, session, pc: null, epoch: null, frames: 0, lastTs: -1, latencies: [],
    fpsWindow: [], stats: null,
    video: node.querySelector("video"), lowres: node.querySelector("canvas"),
    probe: document.createElement("canvas"),
  };
  tile.probe.width = 256; tile.probe.height = 272;
  tile.probeCtx = tile.probe.getContext("2d", { willReadFrequently: true });
  tiles.set(session, tile);
  watchFrames(tile);
  return tile;
}

function watchFrames(tile) {
  const onFrame = () => {
    if (tile.video.videoHeight >= 272) {
      tile.probeCtx.drawImage(tile.video, 0, 0, 256, 272);
      const ts = readStamp(tile.probeCtx);
      const now = Date.now();
      if (ts !== tile.lastTs) {
        tile.lastTs = ts;
        tile.frames += 1;
        tile.fpsWindow.push(now);
        if (tile.epoch !== null) {
          tile.latencies.push(now - (tile.epoch + ts));
          if (tile.latencies.length > 250) tile.latencies.shift();
        }
      }
    }
    tile.video.requestVideoFrameCallback(onFrame);
  };
  tile.video.requestVideoFrameCallback(onFrame);
}

function drawLowres(tile, msg) {
  const size = msg.size;
  const bytes = Uint8Array.from(atob(msg.rgb), (c) => c.charCodeAt(0));
  tile.lowres.width = size; tile.lowres.height = size;
  const ctx = tile.lowres.getContext("2d");
  const img = ctx.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    img.data[4 * i] = bytes[3 * i]; img.data[4 * i + 1] = bytes[3 * i + 1];
    img.data[4 * i + 2] = bytes[3 * i + 2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  tile.lowresCount = (tile.lowresCount || 0) + 1;
}

function onViewMessage(tile, msg) {
  if (msg.type === "hello") tile.node.querySelector(".label").textContent = msg.label;
  else if (msg.type === "epoch") tile.epoch = msg.epoch_unix_ms;
  else if (msg.type === "lowres") drawLowres(tile, msg);
  else if (msg.type === "stats") {
    tile.stats = msg;
  }
}

async function acceptView(from, data) {
  const tile = tiles.get(data.session) || newTile(data.session);
  tile.stale = false;
  if (tile.byeTimer) { clearTimeout(tile.byeTimer); tile.byeTimer = null; }
  tile.node.classList.remove("ended");
  if (tile.pc) tile.pc.close();
  const pc = new RTCPeerConnection({ iceServers });
  tile.pc = pc;
  const stream = new MediaStream();
  pc.addEventListener("track", (ev) => {
    stream.addTrack(ev.track);
    tile.video.srcObject = stream;
    tile.video.play().catch(() => {});
  });
  pc.addEventListener("datachannel", (ev) => {
    ev.channel.addEventListener("message", (m) => {
      if (typeof m.data === "string" && m.data.length < 65536) onViewMessage(tile, JSON.parse(m.data));
    });
  });
  await pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  // The offer's number goes back: the worker matches the answer to the offer it made.
  signal(from, { session: data.session, offer: data.offer, kind: "answer",
                 sdp: pc.localDescription.sdp });
}

function dropStaleViews() {
  for (const [session, tile] of [...tiles]) {
    const playing = tile.pc && tile.pc.connectionState === "connected";
    if (tile.stale && !playing) removeView(session);
  }
}

function viewEnded(session) {
  const tile = tiles.get(session);
  if (!tile || tile.byeTimer) return;
  tile.node.classList.add("ended"); // its last picture stays, marked, until offered again
  tile.byeTimer = setTimeout(() => { if (tiles.get(session) === tile) removeView(session); },
                             VIEW_BYE_GRACE_MS);
}

function removeView(session) {
  const tile = tiles.get(session);
  if (!tile) return;
  if (tile.byeTimer) clearTimeout(tile.byeTimer);
  if (tile.pc) tile.pc.close();
  tile.node.remove();
  tiles.delete(session);
  delete window.talkcodec.tiles[session];
  document.getElementById("empty").hidden = tiles.size > 0;
}

// ---- live figures ----------------------------------------------------------------------
function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function refreshFigures() {
  const now = Date.now();
  for (const [session, tile] of tiles) {
    tile.fpsWindow = tile.fpsWindow.filter((t) => t > now - 2000);
    const s = tile.stats || {};
    const fig = {
      label: s.label || "", frames: tile.frames, lowres: tile.lowresCount || 0,
      fps: tile.fpsWindow.length / 2, latencyMs: median(tile.latencies),
      videoKbps: s.video_kbps ?? null, codeKbps: s.code_kbps ?? null,
      audioKbps: s.audio_kbps ?? 0,
      totalKbps: s.total_kbps ?? 0, transportKbps: s.transport_kbps ?? 0,
      loss: s.lowres_loss ?? null, audioLoss: s.audio_loss ?? null,
      receiver: s.receiver || "", lowLatency: !!s.low_latency, ended: !!tile.byeTimer,
    };
    window.talkcodec.tiles[session] = fig;
    const q = (c) => tile.node.querySelector(c);
    q(".video-kbps").textContent = fig.videoKbps === null ? "–" : fig.videoKbps.toFixed(2) + " kbit/s";
    q(".code-kbps").textContent = fig.codeKbps === null ? "–" : fig.codeKbps.toFixed(2) + " kbit/s";
    q(".audio-kbps").textContent = fig.audioKbps.toFixed(2) + " kbit/s";
    q(".total-kbps").textContent = fig.totalKbps.toFixed(2) + " kbit/s";
    q(".transport-kbps").textContent = fig.transportKbps.toFixed(2) + " kbit/s (incl. SRTP/SCTP)";
    q(".fps").textContent = fig.fps.toFixed(1);
    q(".latency").textContent = fig.latencyMs === null ? "–" : Math.round(fig.latencyMs) + " ms";
    q(".loss").textContent = fig.loss === null ? "–" :
      (100 * fig.loss).toFixed(1) + " % 8x8, " + (100 * (fig.audioLoss || 0)).toFixed(1) + " % audio";
    q(".receiver").textContent = fig.receiver + (fig.lowLatency ? " (low latency)" : "");
  }
}
setInterval(refreshFigures, 500);

// ---- signalling messages ----------------------------------------------------------------
async function onSignal(from, data) {
  if (!data || typeof data.session !== "string") return;
  if (data.kind === "offer" && data.session.startsWith("view:")) await acceptView(from, data);
  else if (data.kind === "answer" && cameraPc && data.session === "camera:" + me) {
    await cameraPc.setRemoteDescription({ type: "answer", sdp: data.sdp });
  } else if (data.kind === "bye") {
    if (data.session.startsWith("view:")) viewEnded(data.session);
    else if (data.session === "camera:" + me && cameraPc && cameraPc.talkcodecAgent === from) {
      cameraEnded("the sender agent closed it");
    }
  }
}

// ---- leave, mute -----------------------------------------------------------------------
const muteButton = document.getElementById("mute");
const leaveButton = document.getElementById("leave");

function setMuted(muted) {
  if (!cameraStream) return;
  cameraStream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  window.talkcodec.muted = muted;
  muteButton.textContent = muted ? "Unmute" : "Mute";
  muteButton.setAttribute("aria-pressed", String(muted));
}

function leave() {
  left = true;
  clearTimeout(cameraRetry);
  if (cameraPc) { cameraPc.close(); cameraPc = null; }
  for (const session of [...tiles.keys()]) removeView(session);
  if (cameraStream) cameraStream.getTracks().forEach((t) => t.stop());
  if (ws) ws.close(1000, "left");
  window.talkcodec.camera = "off";
  window.talkcodec.signalling = "left";
  setStatus("You left the call.");
  setCameraState("");
  muteButton.disabled = true;
  leaveButton.textContent = "Rejoin";
}

muteButton.addEventListener("click", () => setMuted(!window.talkcodec.muted));
leaveButton.addEventListener("click", () => { if (left) location.reload(); else leave(); });

// ---- signalling ------------------------------------------------------------------------
const SIGNAL_RETRY_MS = 3000;
let resumeKey = null; // from the last "joined" (server/signalling.py, resuming)

function connectSignalling() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${proto}//${location.host}/ws`);
  ws = socket;
  socket.addEventListener("open", () => {
    // After a drop, the key of the last "joined": the server gives the place back (nobody
    // hears we were gone, the messages meanwhile follow) if it is within its grace period.
    send({ type: "join", room, token, peer: me, role: "viewer", label,
      ...(resumeKey ? { resume: resumeKey } : {}) });
  });
  socket.addEventListener("close", (ev) => {
    if (ws !== socket || left) return;
    window.talkcodec.signalling = "closed";
    window.talkcodec.signallingDrops = (window.talkcodec.signallingDrops || 0) + 1;
    peers.clear();
    if (ev.code === 1008 || ev.code === 1009) { // refused (token, room, limits): final
      for (const session of [...tiles.keys()]) removeView(session);
      if (cameraPc) cameraEnded("signalling closed");
      setStatus("disconnected" + (ev.reason ? ": " + ev.reason : ""));
      return;
    }
    // The faces and the camera are peer connections of their own, not of this socket: they
    // go on while signalling is away (a signalling process restarting, a network blip).
    // Once back, the workers offer the views again and the camera is offered again.
    for (const tile of tiles.values()) tile.stale = true;
    setStatus("signalling lost" + (ev.reason ? ": " + ev.reason : "") +
      "; reconnecting (the call goes on)…");
    setTimeout(connectSignalling, SIGNAL_RETRY_MS);
  });
  socket.addEventListener("message", async (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "joined") {
      resumeKey = typeof msg.resume === "string" ? msg.resume : null;
      window.talkcodec.resumed = (window.talkcodec.resumed || 0) + (msg.resumed ? 1 : 0);
      msg.peers.forEach((p) => peers.set(p.peer, p));
      setStatus(`in room ${room} as ${label}` +
        (msg.receivers === 0 ? ": no receiver available right now" : ""));
      window.talkcodec.signalling = "joined";
      if (msg.resumed) { // our place was kept: every peer connection goes on as it was
        for (const tile of tiles.values()) tile.stale = false;
        return;
      }
      if (cameraPc) { // back after a drop: the agent may have let the old one go with it
        restartCamera();
      } else {
        await sendCamera();
      }
      // Views the workers do not offer again (their link ended meanwhile) and that no
      // longer play are let go.
      setTimeout(dropStaleViews, STALE_VIEW_MS);
    } else if (msg.type === "peer-joined") {
      peers.set(msg.peer, msg);
      if (msg.role === "agent") await sendCamera();
    } else if (msg.type === "peer-left") {
      peers.delete(msg.peer);
      for (const session of [...tiles.keys()]) if (session.startsWith("view:" + msg.peer + "/")) removeView(session);
      if (cameraPc && cameraPc.talkcodecAgent === msg.peer) cameraEnded("the sender agent left");
    } else if (msg.type === "notice") { // e.g. "no receiver available" (placement)
      window.talkcodec.notice = String(msg.error || "");
      setStatus(`in room ${room} as ${label}: ${window.talkcodec.notice}`);
    } else if (msg.type === "signal") {
      await onSignal(msg.from, msg.data);
    }
  });
}

async function main() {
  // TURN credentials are handed to room-token holders only, and expire (server/turn.py).
  try {
    const resp = await fetch("/api/ice", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ room, token }),
    });
    iceServers = resp.ok ? ((await resp.json()).iceServers || []) : [];
  } catch (e) { iceServers = []; }
  await startCamera();
  muteButton.disabled = !cameraStream || !cameraStream.getAudioTracks().length;
  connectSignalling();
}

main();
