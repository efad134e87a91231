// MJPEG: an <img> on /api/stream.mjpeg, the last resort that every browser shows. No audio,
// and no way for the page to tell how old a picture is, so no latency figure is claimed.

import { streamUrl } from '../api.js';
import { PlayerError } from './common.js';

const FRAME_MS = 15000;

export class MjpegPlayer {
  constructor(img, src) {
    this.name = 'MJPEG';
    this.img = img;
    this.src = src;
    this.hasAudio = false;
    this._ok = false;
    this._url = null;
  }

  start(signal) {
    const { img } = this;
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        img.removeEventListener('load', onLoad);
        img.removeEventListener('error', onError);
        signal.removeEventListener('abort', onAbort);
      };
      const onLoad = () => { cleanup(); this._ok = true; resolve(); };
      const onError = () => { cleanup(); this.stop(); reject(new PlayerError('the MJPEG stream failed')); };
      const onAbort = () => { cleanup(); this.stop(); reject(new DOMException('stopped', 'AbortError')); };
      const timer = setTimeout(() => { cleanup(); this.stop(); reject(new PlayerError(`no picture within ${FRAME_MS / 1000} s`)); }, FRAME_MS);
      img.addEventListener('load', onLoad);
      img.addEventListener('error', onError);
      signal.addEventListener('abort', onAbort);
      img.src = `${streamUrl.mjpeg(this.src)}&t=${Date.now()}`; // never a cached response
      this._url = img.src;
    });
  }

  get healthy() {
    return this._ok && this.img.naturalWidth > 0;
  }

  async stats() {
    const detail = this.img.naturalWidth ? [`${this.img.naturalWidth}×${this.img.naturalHeight}`] : [];
    return { transport: 'MJPEG', latencyMs: null, latencyLabel: 'not measurable for MJPEG', detail, path: '' };
  }

  stop() {
    this._ok = false;
    // Dropping the src makes the browser close the multipart response, which frees the
    // bridge's decoder for this viewer. Only our own: a newer player may own the element.
    if (this._url && this.img.src === this._url) this.img.removeAttribute('src');
    this._url = null;
  }
}
