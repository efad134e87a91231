// LL-HLS. Chromium has no usable native HLS (its recent builds answer canPlayType with
// "maybe", but without LL-HLS parts), so where Media Source Extensions exist we play the
// bridge's fMP4 parts ourselves: blocking playlist reloads name the next part, each part is
// appended as it is published, and the playhead is kept a little behind the newest one.
// Only where MSE is missing (iPhone Safari) does the <video> element get the playlist itself.

import { streamUrl } from '../api.js';
import { PlayerError, fetchWithin, firstFrame, playMuted } from './common.js';
import { parseMedia, parseMultivariant } from './m3u8.js';

const PLAYLIST_MS = 30000; // the first request waits while the doorbell wakes
const FRAME_MS = 15000;
const TARGET_BEHIND = 0.6; // seconds behind the newest part: two parts of slack
const JUMP_BEHIND = 1.5; // further behind than this (the start, a stall, a hidden tab): jump
const KEEP_BACK = 20; // seconds of played media kept in the SourceBuffer

export class HlsPlayer {
  constructor(video, src) {
    this.name = 'HLS';
    this.video = video;
    this.src = src;
    this.mode = '';
    this.hasAudio = false;
    this._controller = null;
    this._objectUrl = null;
    this._source = null;
    this._sb = null;
    this._mse = null;
    this._mime = '';
    this._lastAppend = 0;
    this.initSections = 0; // init sections appended: more than one means the stream changed
    this.codecChanges = 0; // of them, how many brought a new codec string
  }

  async start(signal) {
    const controller = new AbortController();
    this._controller = controller;
    signal.addEventListener('abort', () => controller.abort(), { once: true });
    const inner = controller.signal;
    const multivariant = new URL(streamUrl.hls(this.src), window.location.href).href;
    const mse = window.ManagedMediaSource || window.MediaSource;
    if (!mse && this.video.canPlayType('application/vnd.apple.mpegurl')) {
      this.mode = 'native';
      this.video.src = multivariant;
      this._source = this.video.src;
      await playMuted(this.video);
      await firstFrame(this.video, FRAME_MS, inner);
      return;
    }
    if (!mse) throw new PlayerError('this browser has neither Media Source Extensions nor native HLS');
    this.mode = 'MSE';
    const variant = parseMultivariant(await this._text(multivariant, inner), multivariant);
    const mime = `video/mp4; codecs="${variant.codecs || 'avc1.42e01e'}"`;
    if (!mse.isTypeSupported(mime)) throw new PlayerError(`this browser cannot play ${mime}`);
    this.hasAudio = variant.codecs.includes('mp4a');
    await this._open(mse, mime);
    const running = this._run(variant.uri, inner);
    running.catch(() => {});
    await playMuted(this.video);
    await Promise.race([firstFrame(this.video, FRAME_MS, inner), running.then(() => {
      throw new PlayerError('the HLS stream ended');
    })]);
  }

  /** A fresh MediaSource on the element, with one SourceBuffer for `mime`. */
  async _open(mse, mime) {
    const source = new mse();
    const objectUrl = URL.createObjectURL(source);
    this.video.disableRemotePlayback = true; // ManagedMediaSource insists on it
    this.video.src = objectUrl;
    if (this._objectUrl) URL.revokeObjectURL(this._objectUrl);
    this._objectUrl = objectUrl;
    this._source = this.video.src;
    this._mse = mse;
    await new Promise((resolve) => source.addEventListener('sourceopen', resolve, { once: true }));
    this._sb = source.addSourceBuffer(mime);
    this._sb.mode = 'segments'; // timestamps come from the fragments' tfdt boxes
    this._mime = mime;
  }

  // A new init section (EXT-X-MAP) comes with a new SPS/PPS: the doorbell changed its picture
  // size (libwebrtc's quality scaler does this under load). MSE takes a new init section in
  // the same SourceBuffer, but the codec string may change with it (the H.264 level follows
  // the size), and the spec wants the SourceBuffer told first: changeType() where it exists,
  // else a fresh MediaSource (a moment of black, but playback goes on).
  async _followInit(init) {
    this.initSections += 1;
    const avc = avcCodec(new Uint8Array(init));
    const mime = avc ? this._mime.replace(/avc1\.[0-9a-fA-F]{6}/, avc) : this._mime;
    if (mime === this._mime) return;
    this.codecChanges += 1;
    if (typeof this._sb.changeType === 'function') {
      this._sb.changeType(mime);
      this._mime = mime;
    } else {
      await this._open(this._mse, mime);
      playMuted(this.video).catch(() => {}); // a new source pauses the element
    }
  }

  get healthy() {
    return !!this._controller && !this._controller.signal.aborted && !this.failed;
  }

  async _text(url, signal) {
    const response = await fetchWithin(url, { credentials: 'same-origin' }, PLAYLIST_MS, signal);
    if (!response.ok) throw new PlayerError(`${response.status} for the HLS playlist`);
    return response.text();
  }

  async _bytes(url, signal) {
    const response = await fetchWithin(url, { credentials: 'same-origin' }, PLAYLIST_MS, signal);
    if (!response.ok) throw new PlayerError(`${response.status} for ${new URL(url).pathname}`);
    return response.arrayBuffer();
  }

  async _playlist(url, cursor, signal) {
    const u = new URL(url);
    if (cursor) {
      u.searchParams.set('_HLS_msn', cursor.msn);
      u.searchParams.set('_HLS_part', cursor.part);
    }
    return parseMedia(await this._text(u.href, signal), url);
  }

  async _run(mediaUrl, signal) {
    try {
      let playlist = await this._playlist(mediaUrl, null, signal);
      let cursor = startAt(playlist);
      let map = null;
      while (!signal.aborted) {
        const first = playlist.segments[0];
        if (!first) throw new PlayerError('the HLS playlist is empty');
        if (cursor.msn < first.msn) cursor = startAt(playlist); // fell out of the window
        for (;;) {
          const seg = playlist.segments.find((s) => s.msn === cursor.msn);
          if (!seg) break;
          if (seg.map !== map) {
            const init = await this._bytes(seg.map, signal); // a new init section
            await this._followInit(init);
            await this._append(init);
            map = seg.map;
          }
          if (cursor.part < seg.parts.length) {
            await this._append(await this._bytes(seg.parts[cursor.part].uri, signal));
            cursor = { msn: cursor.msn, part: cursor.part + 1 };
          } else if (seg.uri) {
            // Complete. Its parts may have left the playlist already: then take it whole.
            if (!seg.parts.length && cursor.part === 0) await this._append(await this._bytes(seg.uri, signal));
            cursor = { msn: cursor.msn + 1, part: 0 };
          } else {
            break; // the part we want next is still being made
          }
        }
        this._keepUp();
        if (playlist.ended) return;
        if (playlist.canBlock) {
          playlist = await this._playlist(mediaUrl, cursor, signal);
        } else {
          await sleep((playlist.partTarget || playlist.targetDuration / 2) * 1000, signal);
          playlist = await this._playlist(mediaUrl, null, signal);
        }
      }
    } catch (err) {
      if (!signal.aborted) this.failed = err;
      throw err;
    }
  }

  _append(data) {
    const sb = this._sb;
    return new Promise((resolve, reject) => {
      const done = () => { sb.removeEventListener('error', fail); resolve(); };
      const fail = () => { sb.removeEventListener('updateend', done); reject(new PlayerError('the browser refused an HLS fragment')); };
      sb.addEventListener('updateend', done, { once: true });
      sb.addEventListener('error', fail, { once: true });
      try {
        sb.appendBuffer(data);
      } catch (err) {
        sb.removeEventListener('updateend', done);
        sb.removeEventListener('error', fail);
        reject(err);
      }
    }).then(() => { this._lastAppend = performance.now(); });
  }

  _keepUp() {
    const { video } = this;
    const ranges = video.buffered;
    if (!ranges.length || !this._sb) return;
    const last = ranges.length - 1;
    const end = ranges.end(last);
    const behind = end - video.currentTime;
    if (video.currentTime < ranges.start(last) || behind > JUMP_BEHIND) {
      // At the start (playback begins at the segment's keyframe, up to a segment behind), past
      // a gap, or far behind: seeking into buffered media is cheap with MSE (the decoder
      // starts from the keyframe before the target), so jump instead of fast-forwarding.
      video.currentTime = Math.max(ranges.start(last), end - TARGET_BEHIND);
    } else {
      // A little behind: play 10 % faster until caught up (Chromium keeps the audio's pitch).
      video.playbackRate = behind > TARGET_BEHIND * 1.5 ? 1.1 : 1.0;
    }
    const sb = this._sb;
    if (sb && !sb.updating && ranges.start(0) < video.currentTime - KEEP_BACK * 1.5) {
      sb.remove(0, video.currentTime - KEEP_BACK);
    }
  }

  async stats() {
    const { video } = this;
    const out = { transport: `HLS (${this.mode})`, latencyMs: null, latencyLabel: '', detail: [], path: '' };
    const ranges = this.mode === 'native' ? video.seekable : video.buffered;
    if (ranges.length) {
      let edge = ranges.end(ranges.length - 1) - video.currentTime;
      // The stream's edge moved on since the newest part arrived.
      if (this.mode === 'MSE' && this._lastAppend) edge += (performance.now() - this._lastAppend) / 1000;
      out.latencyMs = Math.max(0, Math.round(edge * 1000));
      out.latencyLabel = 'behind the playlist\'s live edge';
    }
    if (video.videoWidth) out.detail.push(`${video.videoWidth}×${video.videoHeight}`);
    if (video.playbackRate !== 1) out.detail.push(`catching up ×${video.playbackRate}`);
    return out;
  }

  stop() {
    if (this._controller) this._controller.abort();
    this._controller = null;
    this._sb = null;
    // Only our own source: a newer player may already own the element.
    if (this._source && this.video.src === this._source) {
      this.video.removeAttribute('src');
      this.video.load();
    }
    if (this._objectUrl) URL.revokeObjectURL(this._objectUrl);
    this._objectUrl = null;
    this._source = null;
  }
}

/** Where to start: the newest independent part (a keyframe), else the newest whole segment. */
function startAt(playlist) {
  const segments = playlist.segments;
  for (let i = segments.length - 1; i >= 0; i -= 1) {
    const parts = segments[i].parts;
    for (let p = parts.length - 1; p >= 0; p -= 1) {
      if (parts[p].independent) return { msn: segments[i].msn, part: p };
    }
  }
  const complete = segments.filter((s) => s.uri);
  const seg = complete[complete.length - 1] || segments[0];
  return { msn: seg.msn, part: 0 };
}

/** The `avc1.PPCCLL` codec string an init section's avcC box declares, or null. */
function avcCodec(data) {
  // 'avcC', then configurationVersion, profile, profile compatibility, level.
  for (let i = 4; i + 8 <= data.length; i += 1) {
    if (data[i] === 0x61 && data[i + 1] === 0x76 && data[i + 2] === 0x63 && data[i + 3] === 0x43) {
      const hex = (b) => b.toString(16).padStart(2, '0');
      return `avc1.${hex(data[i + 5])}${hex(data[i + 6])}${hex(data[i + 7])}`;
    }
  }
  return null;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(new DOMException('stopped', 'AbortError')); }, { once: true });
  });
}
