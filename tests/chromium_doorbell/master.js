// A KVS signaling *master* in Chromium: a real libwebrtc H.264 sender standing in for a doorbell.
//
// Like a real camera's SDK it connects to the channel without a client id, answers each viewer's
// SDP_OFFER with a fresh RTCPeerConnection (the bridge reconnects under new viewer ids), trickles
// its own candidates and takes the viewer's. libwebrtc sends one keyframe at the start and then
// only on PLI/FIR, which is exactly what the bridge must cope with.
//
// Query: ?source=camera|canvas &width= &height= &fps=
//   camera: Chromium's fake capture device (--use-fake-device-for-media-stream).
//   canvas: a drawn test card carrying the simulator's machine-readable stamp (frame number and
//           capture time, bridge/sim/picture.py), so tests can tell how old a picture is.
// window.stats() gives the video outbound-rtp counters per peer and summed.
//
// Only 127.0.0.1 may ever be a target on the test machine. Chromium also gathers the other
// interfaces' addresses (192.0.2.2 on eth0 here), so:
// - the candidates we trickle are filtered to UDP on 127.0.0.1, and so is the answer SDP;
// - the viewer's candidates (in its offer or trickled) are checked and counted but NOT given to
//   Chromium: with a remote candidate Chromium checks it from every local interface, and
//   aiortc (controlling, aggressive nomination) then often nominates the pair from 192.0.2.2
//   and sends its media there. Knowing no remote candidate, Chromium answers the viewer's
//   checks to our 127.0.0.1 candidate from that socket only, learning the viewer's address as
//   peer-reflexive: the only pair is 127.0.0.1 <-> 127.0.0.1.

const params = new URLSearchParams(location.search);
const SOURCE = params.get('source') || 'camera';
const WIDTH = Number(params.get('width') || 640);
const HEIGHT = Number(params.get('height') || 480);
const FPS = Number(params.get('fps') || 15);
const COUNTERS = ['pliCount', 'firCount', 'nackCount', 'keyFramesEncoded', 'framesEncoded',
  'framesSent', 'packetsSent', 'bytesSent'];
// Inbound audio (talk from the bridge), per peer and summed.
const AUDIO_IN = ['audioBytesReceived', 'audioPacketsReceived'];

const peers = new Map();   // viewer client id -> peer record
const finished = [];       // last stats of peers that are gone
const chains = new Map();  // viewer client id -> promise: a viewer's messages in arrival order
const events = [];
let media = null;
let socket = null;
let connects = 0;

function log(text) {
  const line = `${(performance.now() / 1000).toFixed(3)} ${text}`;
  events.push(line);
  if (events.length > 500) events.shift();
  console.log(line);
}

// ---- media --------------------------------------------------------------------------------

async function openMedia() {
  const audio = await navigator.mediaDevices.getUserMedia({audio: true});
  if (SOURCE === 'camera') {
    const video = await navigator.mediaDevices.getUserMedia({
      video: {width: {exact: WIDTH}, height: {exact: HEIGHT}, frameRate: {ideal: FPS, max: FPS}},
    });
    return new MediaStream([...video.getVideoTracks(), ...audio.getAudioTracks()]);
  }
  const canvas = document.getElementById('card');
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  const g = canvas.getContext('2d');
  let frame = 0;
  const draw = () => drawCard(g, frame++, Date.now());
  draw();
  setInterval(draw, 1000 / FPS);
  const video = canvas.captureStream(FPS);
  return new MediaStream([...video.getVideoTracks(), ...audio.getAudioTracks()]);
}

// The stamp of bridge/sim/picture.py: 16 px blocks from (16, 16), frame number (32 bits),
// capture time in ms (48 bits) and CRC-16/CCITT (crc_hqx, init 0xFFFF) of those 10 bytes.
const BLOCK = 16;
const MARGIN = 16;

function crcHqx(bytes, crc) {
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function stampBits(frameNo, captureMs) {
  const bytes = [];
  for (let i = 3; i >= 0; i--) bytes.push(Math.floor(frameNo / 2 ** (8 * i)) % 256);
  for (let i = 5; i >= 0; i--) bytes.push(Math.floor(captureMs / 2 ** (8 * i)) % 256);
  const crc = crcHqx(bytes, 0xffff);
  bytes.push(crc >> 8, crc & 0xff);
  const bits = [];
  for (const byte of bytes) for (let i = 7; i >= 0; i--) bits.push((byte >> i) & 1);
  return bits;
}

function drawCard(g, frameNo, captureMs) {
  // A still gradient with a bar sweeping across: motion for every P-frame, but never a scene
  // change. (A scrolling gradient that wrapped around made OpenH264's scene-change detection
  // encode an unasked IDR each wrap, every ~10 s; a camera on a doorstep does not do that.)
  const grad = g.createLinearGradient(0, 0, WIDTH, HEIGHT);
  grad.addColorStop(0, '#304060');
  grad.addColorStop(1, '#a0a070');
  g.fillStyle = grad;
  g.fillRect(0, 0, WIDTH, HEIGHT);
  g.fillStyle = '#d0d0d0';
  g.fillRect((frameNo * 4) % WIDTH, 120, 24, HEIGHT - 200);
  const perRow = Math.floor((WIDTH - 2 * MARGIN) / BLOCK);
  stampBits(frameNo, captureMs).forEach((bit, i) => {
    g.fillStyle = bit ? '#ffffff' : '#000000';
    g.fillRect(MARGIN + (i % perRow) * BLOCK, MARGIN + Math.floor(i / perRow) * BLOCK, BLOCK, BLOCK);
  });
  g.fillStyle = '#000000';
  g.fillRect(MARGIN, HEIGHT - 64, 360, 44);
  g.fillStyle = '#ffffff';
  g.font = '28px monospace';
  g.fillText(`${new Date(captureMs).toISOString().slice(11, 23)} #${frameNo}`, MARGIN + 8, HEIGHT - 32);
}

// ---- candidates: loopback only ------------------------------------------------------------

function loopbackUdp(candidate) {
  // "candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ..."
  const f = candidate.replace(/^a=/, '').trim().split(/\s+/);
  return f.length > 7 && f[2].toLowerCase() === 'udp' && f[4] === '127.0.0.1';
}

function loopbackSdp(sdp) {
  return sdp.split(/\r?\n/).filter(l => !l.startsWith('a=candidate:') || loopbackUdp(l)).join('\r\n');
}

function candidatesOf(sdp) {
  return sdp.split(/\r?\n/).filter(l => l.startsWith('a=candidate:')).map(l => l.slice(2));
}

function withoutCandidates(sdp) {
  return sdp.split(/\r?\n/).filter(l => !l.startsWith('a=candidate:')).join('\r\n');
}

// ---- signaling ------------------------------------------------------------------------------

function send(action, recipient, payload) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    log(`cannot send ${action}: signaling is down`);
    return;
  }
  socket.send(JSON.stringify({
    action, recipientClientId: recipient, messagePayload: btoa(JSON.stringify(payload)),
  }));
}

async function connect() {
  const {url} = await (await fetch('master-url')).json();
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => { connects++; log(`signaling connected (#${connects})`); };
  ws.onmessage = ev => onMessage(ev.data);
  ws.onclose = ev => {
    log(`signaling closed (${ev.code} ${ev.reason}); reconnecting`);
    if (socket === ws) setTimeout(() => connect().catch(e => log(`connect failed: ${e}`)), 500);
  };
}

function onMessage(data) {
  let msg;
  let payload;
  try {
    msg = JSON.parse(data);
    payload = msg.messagePayload ? JSON.parse(atob(msg.messagePayload)) : null;
  } catch (err) {
    log(`ignoring a frame that is not ours to read: ${String(data).slice(0, 60)}`);
    return;
  }
  const viewer = msg.senderClientId;
  if (!viewer || !payload || !['SDP_OFFER', 'ICE_CANDIDATE'].includes(msg.messageType)) {
    log(`ignoring ${msg.messageType}`);
    return;
  }
  const handle = msg.messageType === 'SDP_OFFER' ? () => onOffer(viewer, payload.sdp)
    : () => onCandidate(viewer, payload);
  const chain = (chains.get(viewer) || Promise.resolve()).then(handle)
    .catch(err => log(`viewer ${viewer}: ${msg.messageType} failed: ${err}`));
  chains.set(viewer, chain);
}

function preferred(kind, wanted) {
  const codecs = RTCRtpSender.getCapabilities(kind).codecs;
  return wanted.flatMap(test => codecs.filter(test));
}

// Chromium encodes Constrained Baseline, packetization-mode 1; never let the answer pick
// another H.264 profile the offer may list first.
const H264 = [
  c => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine)
    && /profile-level-id=42e01f/.test(c.sdpFmtpLine),
  c => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine)
    && /profile-level-id=42001f/.test(c.sdpFmtpLine),
  c => c.mimeType === 'video/rtx',
];
const OPUS = [c => c.mimeType === 'audio/opus'];

async function onOffer(viewer, sdp) {
  const old = peers.get(viewer);
  if (old) await retire(old, 'replaced by a new offer');
  const pc = new RTCPeerConnection({iceServers: []});
  const rec = {
    viewer, pc, created: Date.now(), closed: false, last: null, sent: 0, dropped: 0,
    viewerCandidates: [],
  };
  peers.set(viewer, rec);
  log(`offer from ${viewer}`);
  pc.onicecandidate = ev => {
    if (!ev.candidate || !ev.candidate.candidate) return;
    if (!loopbackUdp(ev.candidate.candidate)) { rec.dropped++; return; }
    rec.sent++;
    send('ICE_CANDIDATE', viewer, {
      candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex,
    });
  };
  pc.onconnectionstatechange = () => {
    log(`viewer ${viewer}: ${pc.connectionState}`);
    if (pc.connectionState === 'failed') retire(rec, 'failed');
  };
  for (const cand of candidatesOf(sdp)) noteViewerCandidate(rec, cand);
  await pc.setRemoteDescription({type: 'offer', sdp: withoutCandidates(sdp)});
  for (const transceiver of pc.getTransceivers()) {
    const kind = transceiver.receiver.track.kind;
    const track = media.getTracks().find(t => t.kind === kind);
    if (!track) continue;
    transceiver.setCodecPreferences(preferred(kind, kind === 'video' ? H264 : OPUS));
    await transceiver.sender.replaceTrack(track);
    // Audio both ways, as a doorbell with a speaker answers: the bridge's talk reaches it.
    transceiver.direction = kind === 'audio' ? 'sendrecv' : 'sendonly';
  }
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  send('SDP_ANSWER', viewer, {type: 'answer', sdp: loopbackSdp(pc.localDescription.sdp)});
  log(`answered ${viewer}`);
}

async function onCandidate(viewer, payload) {
  const rec = peers.get(viewer);
  if (!rec || rec.closed || !payload.candidate) return;
  noteViewerCandidate(rec, payload.candidate);
}

function noteViewerCandidate(rec, candidate) {
  // Kept for the stats, never applied (see the top of this file).
  if (!loopbackUdp(candidate)) log(`viewer ${rec.viewer}: non-loopback candidate ${candidate}`);
  rec.viewerCandidates.push(candidate);
}

async function retire(rec, why) {
  if (rec.closed) return;
  await peerStats(rec);
  rec.closed = true;
  rec.pc.close();
  if (peers.get(rec.viewer) === rec) peers.delete(rec.viewer);
  finished.push(rec.last);
  log(`viewer ${rec.viewer}: closed (${why})`);
}

// ---- stats ----------------------------------------------------------------------------------

async function peerStats(rec) {
  if (rec.closed) return rec.last;
  const out = {
    viewer: rec.viewer, connectionState: rec.pc.connectionState,
    iceConnectionState: rec.pc.iceConnectionState, candidatesSent: rec.sent,
    candidatesDropped: rec.dropped, viewerCandidates: rec.viewerCandidates,
  };
  const report = await rec.pc.getStats();
  for (const s of report.values()) {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      for (const key of COUNTERS) out[key] = s[key] || 0;
      Object.assign(out, {
        frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesPerSecond: s.framesPerSecond,
        encoderImplementation: s.encoderImplementation,
        qualityLimitationReason: s.qualityLimitationReason,
        mimeType: s.codecId && report.get(s.codecId) ? report.get(s.codecId).mimeType : undefined,
      });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      // What the bridge says to the visitor (talk), as libwebrtc received it.
      out.audioBytesReceived = s.bytesReceived || 0;
      out.audioPacketsReceived = s.packetsReceived || 0;
    }
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = report.get(s.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      if (local && remote) out.pair = `${local.address}:${local.port} <-> ${remote.address}:${remote.port}`;
    }
  }
  rec.last = out;
  return out;
}

window.stats = async () => {
  const live = await Promise.all([...peers.values()].map(peerStats));
  const all = [...finished, ...live];
  const summed = [...COUNTERS, ...AUDIO_IN];
  const total = Object.fromEntries(summed.map(k => [k, all.reduce((n, p) => n + (p[k] || 0), 0)]));
  return {peers: live, finished, total, connects, source: SOURCE, events: events.slice(-100)};
};

window.ready = (async () => {
  media = await openMedia();
  const settings = media.getVideoTracks()[0].getSettings();
  log(`media ready: ${SOURCE} ${settings.width}x${settings.height} @ ${settings.frameRate}`);
  await connect();
  return true;
})();
