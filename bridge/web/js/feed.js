// The live event feed: one EventSource on /api/events/stream for the whole page. The bridge
// names each message after the event type, so every type needs its own listener.

// SwitchBot's events (the bridge's /api/switchbot/webhook): sensors, locks and keypads.
export const SWITCHBOT_TYPES = ['switchbot.motion', 'switchbot.motion.clear',
  'switchbot.contact.open', 'switchbot.contact.close', 'switchbot.contact.left_open',
  'switchbot.lock.locked', 'switchbot.lock.unlocked', 'switchbot.lock.jammed',
  'switchbot.keypad.create_key', 'switchbot.keypad.delete_key', 'switchbot.keypad.other',
  'switchbot.camera.motion', 'switchbot.bot.on', 'switchbot.bot.off', 'switchbot.plug.on',
  'switchbot.plug.off', 'switchbot.light.on', 'switchbot.light.off', 'switchbot.curtain',
  'switchbot.meter', 'switchbot.vacuum', 'switchbot.other'];
const TYPES = ['doorbell', 'motion', 'lstream', 'availability', 'vready', 'telemetry', 'ota',
  'devicedeleted', 'unknown', ...SWITCHBOT_TYPES];
const RETRY_MS = 5000;

export class EventFeed extends EventTarget {
  constructor() {
    super();
    this.state = 'closed';
    this._source = null;
    this._timer = 0;
  }

  connect() {
    this.close();
    const source = new EventSource('api/events/stream');
    this._source = source;
    this._set('connecting');
    source.addEventListener('open', () => this._set('open'));
    for (const type of TYPES) {
      source.addEventListener(type, (message) => {
        let data;
        try { data = JSON.parse(message.data); } catch { return; }
        if (data && typeof data === 'object' && data.id) {
          this.dispatchEvent(new CustomEvent('event', { detail: { type, ...data } }));
        }
      });
    }
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // A refused request (a 401 after the session expired, say) is not retried by the
        // browser; the app checks the session and we try again later.
        this._set('closed');
        this.dispatchEvent(new CustomEvent('lost'));
        this._timer = setTimeout(() => this.connect(), RETRY_MS);
      } else {
        this._set('connecting');
      }
    });
  }

  close() {
    clearTimeout(this._timer);
    if (this._source) this._source.close();
    this._source = null;
    this._set('closed');
  }

  _set(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }
}
