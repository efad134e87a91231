// Push-to-talk on the live view: hold the button (or the space bar) and the microphone goes to
// the doorbell over the viewer's own WebRTC session. The microphone is asked for only on the
// first press, with the browser's echo cancellation: the doorbell's own sound plays right next
// to it. The bridge is asked first (one talker per doorbell), and the microphone is attached to
// the connection only once it says yes, so nothing is sent while someone else talks.

import { h } from './dom.js';

const METER_MS = 50;
const WATCH_MS = 1000; // how often a held talk asks whether the doorbell still hears it
const MESSAGES = {
  409: 'Someone is already talking',
  501: 'Talk not supported by this doorbell',
};

export class TalkControl {
  constructor() {
    this.button = h('button', { type: 'button', id: 'talk', class: 'talk', disabled: true, 'aria-pressed': 'false' }, 'Hold to talk');
    this.meter = h('meter', { id: 'talk-level', min: 0, max: 1, value: 0, 'aria-label': 'Microphone level' });
    this.state = h('output', { id: 'talk-state', role: 'status', 'aria-live': 'polite' }, '');
    this.element = h('div', { class: 'talk-box', role: 'group', 'aria-label': 'Talk to the visitor', dataset: { state: 'off' } },
      this.button, this.meter, this.state);
    this.element.title = 'Hold the button or the space bar to talk';
    this.player = null;
    this.mic = null;
    this.audio = null; // { context, analyser, data }
    this.held = false;
    this.talking = false;
    this.busy = null; // the press being handled (start, then maybe stop)
    this.meterTimer = 0;
    this.watchTimer = 0;
    this._keys = this._keys.bind(this);
    this.button.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      this.button.setPointerCapture(event.pointerId); // the release counts even off the button
      this.press();
    });
    for (const kind of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      this.button.addEventListener(kind, () => this.release());
    }
    // A long press on a phone would open the context menu (and cancel the pointer) instead.
    this.button.addEventListener('contextmenu', (event) => event.preventDefault());
    this.button.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.repeat) this.press();
    });
    this.button.addEventListener('keyup', (event) => { if (event.key === 'Enter') this.release(); });
    document.addEventListener('keydown', this._keys);
    document.addEventListener('keyup', this._keys);
    this._blur = () => this.release(); // a key let go in another window is never seen here
    window.addEventListener('blur', this._blur);
  }

  /** The player now playing (talk works over WebRTC only), or null. */
  setPlayer(player) {
    if (this.player && this.player !== player) this.release();
    this.player = player;
    const usable = !!player && typeof player.startTalk === 'function' && player.canTalk;
    this.button.disabled = !usable;
    if (usable) this.show('idle', '');
    else this.show('off', player ? 'Talk needs the WebRTC live view' : '');
  }

  show(state, text) {
    this.element.dataset.state = state;
    this.state.textContent = text;
  }

  _keys(event) {
    if (event.code !== 'Space' || this.button.disabled) return;
    const target = event.target;
    if (target && (target.isContentEditable || ['INPUT', 'SELECT', 'TEXTAREA'].includes(target.tagName))) return;
    event.preventDefault(); // no scrolling, and no click on whichever button has the focus
    if (event.type === 'keydown') { if (!event.repeat) this.press(); } else this.release();
  }

  press() {
    if (this.held || this.button.disabled) return;
    this.held = true;
    this.button.setAttribute('aria-pressed', 'true');
    this.busy = (this.busy || Promise.resolve()).then(() => this._start());
  }

  release() {
    if (!this.held) return;
    this.held = false;
    this.button.setAttribute('aria-pressed', 'false');
    this.busy = (this.busy || Promise.resolve()).then(() => this._stop());
  }

  async _start() {
    if (!this.held) return; // released before the previous step finished
    const player = this.player;
    if (!player) return;
    this.show('starting', 'Connecting to the doorbell…');
    try {
      await this._microphone();
    } catch (err) {
      this.show('error', `No microphone: ${err.message}`);
      return;
    }
    try {
      await player.startTalk(this.mic.getAudioTracks()[0]);
    } catch (err) {
      const text = MESSAGES[err.status] || `Cannot talk: ${err.message}`;
      this.show(err.status === 409 ? 'busy' : err.status === 501 ? 'unsupported' : 'error', text);
      return;
    }
    this.talking = true;
    this.show('talking', 'Talking…');
    this.button.classList.add('live');
    this._meter(true);
    this._watch(player);
    if (!this.held) await this._stop(); // let go while the bridge was answering
  }

  /** The bridge ends a talk on its own when the call drops: say so instead of "Talking…". */
  _watch(player) {
    clearInterval(this.watchTimer);
    this.watchTimer = setInterval(async () => {
      let state = null;
      try { state = await player.talkState(); } catch { return; } // the view's watchdog reconnects
      if (!this.talking || this.player !== player || state.talking) return;
      this.busy = (this.busy || Promise.resolve()).then(() => this._stop());
      await this.busy;
      this.show('error', `Talk ended: ${state.ended || 'the doorbell stopped listening'}`);
    }, WATCH_MS);
  }

  async _stop() {
    clearInterval(this.watchTimer);
    if (!this.talking) return;
    this.talking = false;
    this.button.classList.remove('live');
    this._meter(false);
    const player = this.player;
    if (player) await player.stopTalk();
    if (this.element.dataset.state === 'talking') this.show('idle', '');
  }

  async _microphone() {
    if (this.mic && this.mic.getAudioTracks().some((t) => t.readyState === 'live')) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('this browser gives no microphone here (it needs HTTPS or localhost)');
    }
    this.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const AudioContextClass = window.AudioContext || window.webkitAudioContext;
    if (AudioContextClass) {
      const context = new AudioContextClass();
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(this.mic).connect(analyser);
      this.audio = { context, analyser, data: new Float32Array(analyser.fftSize) };
    }
  }

  _meter(on) {
    clearInterval(this.meterTimer);
    this.meter.value = 0;
    if (!on || !this.audio) return;
    if (this.audio.context.state === 'suspended') this.audio.context.resume().catch(() => {});
    this.meterTimer = setInterval(() => {
      const { analyser, data } = this.audio;
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const x of data) sum += x * x;
      const rms = Math.sqrt(sum / data.length);
      // -60 dBFS (room noise) to 0 dBFS: a scale on which speech moves the bar.
      const db = 20 * Math.log10(rms || 1e-6);
      this.meter.value = Math.max(0, Math.min(1, (db + 60) / 60));
      this.element.dataset.level = this.meter.value.toFixed(2);
    }, METER_MS);
  }

  /** Stop talking, free the microphone and the listeners: the view is going away. */
  destroy() {
    this.release();
    document.removeEventListener('keydown', this._keys);
    document.removeEventListener('keyup', this._keys);
    window.removeEventListener('blur', this._blur);
    const done = () => {
      clearInterval(this.meterTimer);
      if (this.mic) this.mic.getTracks().forEach((t) => t.stop());
      if (this.audio) this.audio.context.close().catch(() => {});
      this.mic = null;
      this.audio = null;
    };
    (this.busy || Promise.resolve()).then(done, done);
  }
}
