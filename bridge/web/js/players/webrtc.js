// WebRTC over WHEP: one offer POSTed to /api/webrtc, the answer back, DELETE to end.
// The bridge does not trickle ICE (there is no PATCH), so the offer goes out only once the
// browser has gathered its candidates; the answer already holds all of the bridge's.
// Audio is offered sendrecv for push-to-talk: with no track on it the browser sends nothing,
// and the microphone is attached only while talk is held (see ../talk.js).

import { api, streamUrl } from '../api.js';
import { PlayerError, fetchWithin, firstFrame, playMuted } from './common.js';

const GATHER_MS = 3000; // after this, send what we have: host candidates come first anyway
const OFFER_MS = 30000; // the bridge may have to wake the doorbell before it answers
const FRAME_MS = 10000;

export class WebRtcPlayer {
  constructor(video, src) {
    this.name = 'WebRTC';
    this.video = video;
    this.src = src;
    this.pc = null;
    this.location = null;
    this.hasAudio = false;
    this._prev = null;
    this._media = null;
    this._audio = null; // the audio transceiver: the doorbell's sound in, the microphone out
  }

  async start(signal) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    this._audio = pc.addTransceiver('audio', { direction: 'sendrecv' });
    const media = new MediaStream();
    this._media = media;
    pc.addEventListener('track', (event) => {
      media.addTrack(event.track);
      if (event.track.kind === 'audio') this.hasAudio = true;
    });
    const failed = new Promise((_, reject) => {
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'failed') reject(new PlayerError('the WebRTC connection failed'));
      });
    });
    failed.catch(() => {}); // only raced below; a later failure is seen by the page's watchdog
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, GATHER_MS, signal);
    const response = await fetchWithin(streamUrl.webrtc(this.src), {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    }, OFFER_MS, signal);
    if (response.status !== 201) {
      let reason = `${response.status} ${response.statusText}`;
      try { reason = (await response.json()).error || reason; } catch { /* not JSON */ }
      throw new PlayerError(`the bridge refused the offer: ${reason}`);
    }
    // The session's id is the Location's last part; the page's own relative path to it
    // still works behind a reverse proxy that serves the bridge under a prefix.
    const location = response.headers.get('Location');
    this.location = location ? `api/webrtc/session/${encodeURIComponent(location.split('/').pop())}` : null;
    const answer = await response.text();
    if (signal.aborted) {
      this.stop(); // stopped while the offer was out: end the session the bridge just made
      throw new DOMException('stopped', 'AbortError');
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    this.video.srcObject = media;
    await playMuted(this.video);
    await Promise.race([firstFrame(this.video, FRAME_MS, signal), failed]);
  }

  /** Whether the bridge takes this viewer's microphone (its answer receives our audio). */
  get canTalk() {
    const t = this._audio;
    return !!this.location && !!t && ['sendrecv', 'sendonly'].includes(t.currentDirection);
  }

  /** Claim the doorbell, then send `track` on the connection; throws HttpError (409, 501...). */
  async startTalk(track) {
    await api(`${this.location}/talk`, { method: 'POST', json: { action: 'start' } });
    await this._audio.sender.replaceTrack(track);
  }

  /** {talking, ended}: whether the bridge still forwards the microphone, and if not why. */
  talkState() {
    return api(`${this.location}/talk`);
  }

  /** Stop sending the microphone and give the doorbell back. */
  async stopTalk() {
    if (this._audio && this.pc) await this._audio.sender.replaceTrack(null).catch(() => {});
    if (this.location) {
      await api(`${this.location}/talk`, { method: 'POST', json: { action: 'stop' }, keepalive: true })
        .catch(() => {});
    }
  }

  /** True while the connection is usable. */
  get healthy() {
    return !!this.pc && !['failed', 'closed'].includes(this.pc.connectionState);
  }

  /** {latency, detail, path} from getStats(): what the browser can actually measure. */
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    let inbound = null;
    let pair = null;
    const byId = new Map();
    report.forEach((s) => {
      byId.set(s.id, s);
      if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId;
    });
    let selected = pair ? byId.get(pair) : null;
    if (!selected) {
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') selected = s;
      });
    }
    const out = { transport: 'WebRTC', latencyMs: null, latencyLabel: '', detail: [], path: '' };
    if (inbound) {
      // The average jitter-buffer delay over the last interval (the totals are cumulative).
      const prev = this._prev;
      const emitted = inbound.jitterBufferEmittedCount || 0;
      const delay = inbound.jitterBufferDelay || 0;
      let buffer = null;
      if (prev && emitted > prev.emitted) buffer = (delay - prev.delay) / (emitted - prev.emitted);
      else if (emitted) buffer = delay / emitted;
      if (prev && inbound.bytesReceived >= prev.bytes) {
        const seconds = (inbound.timestamp - prev.time) / 1000;
        if (seconds > 0) out.bitrate = ((inbound.bytesReceived - prev.bytes) * 8) / seconds;
      }
      this._prev = { emitted, delay, bytes: inbound.bytesReceived, time: inbound.timestamp };
      const rtt = selected && Number.isFinite(selected.currentRoundTripTime) ? selected.currentRoundTripTime : null;
      if (buffer !== null) {
        out.latencyMs = Math.round((buffer + (rtt || 0) / 2) * 1000);
        out.latencyLabel = rtt !== null
          ? 'jitter buffer + half the round trip (browser side only)'
          : 'jitter buffer (browser side only)';
      }
      if (inbound.framesPerSecond) out.detail.push(`${Math.round(inbound.framesPerSecond)} fps`);
      if (inbound.frameWidth) out.detail.push(`${inbound.frameWidth}×${inbound.frameHeight}`);
      if (rtt !== null) out.detail.push(`RTT ${(rtt * 1000).toFixed(1)} ms`);
    }
    if (selected) {
      const local = byId.get(selected.localCandidateId);
      const remote = byId.get(selected.remoteCandidateId);
      if (local && remote) {
        out.path = `${local.address || local.ip}:${local.port} ↔ ${remote.address || remote.ip}:${remote.port}`
          + ` (${local.candidateType}/${local.protocol})`;
      }
    }
    return out;
  }

  /** End the bridge's session and close the peer; `keepalive` lets the DELETE outlive the page. */
  stop({ keepalive = false } = {}) {
    const { pc } = this;
    this.pc = null;
    // Only our own picture: a newer player may already own the element.
    if (this._media && this.video.srcObject === this._media) this.video.srcObject = null;
    if (!this.location) {
      if (pc) pc.close();
      return;
    }
    const url = this.location;
    this.location = null;
    // DELETE first, close after: closing first would let the bridge see the DTLS close and
    // drop the session itself, and the DELETE would then find nothing to end (a 404).
    const closePeer = () => { if (pc) pc.close(); };
    const timer = setTimeout(closePeer, 2000);
    fetch(url, { method: 'DELETE', keepalive, credentials: 'same-origin' })
      .catch(() => {})
      .finally(() => { clearTimeout(timer); closePeer(); });
  }
}

function gathered(pc, ms, signal) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      signal.removeEventListener('abort', abort);
    };
    const check = () => { if (pc.iceGatheringState === 'complete') { done(); resolve(); } };
    const abort = () => { done(); reject(new DOMException('stopped', 'AbortError')); };
    const timer = setTimeout(() => { done(); resolve(); }, ms);
    pc.addEventListener('icegatheringstatechange', check);
    signal.addEventListener('abort', abort);
  });
}
