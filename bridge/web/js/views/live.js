// Live view: WebRTC first, then LL-HLS, then MJPEG, each tried only if the one before fails.
// The live session ends whenever the view is left or the page is hidden, so a forgotten tab
// does not keep a battery doorbell awake.

import { api, streams, streamUrl } from '../api.js';
import { download, fill, h, toast } from '../dom.js';
import { HlsPlayer } from '../players/hls.js';
import { MjpegPlayer } from '../players/mjpeg.js';
import { WebRtcPlayer } from '../players/webrtc.js';
import { TalkControl } from '../talk.js';

const ORDER = ['webrtc', 'hls', 'mjpeg'];
const STATS_MS = 1000;
const MAX_RETRIES = 3;
const STALL_TICKS = 10; // stats ticks without a new video frame before reconnecting
const SETTLED_TICKS = 60; // a minute of playing forgives earlier reconnects

export function render(root, params, ctx) {
  const name = params.name;
  const wanted = params.query.get('transport');
  const order = ORDER.includes(wanted) ? [wanted] : ORDER;

  const heading = h('h1', { tabindex: '-1' }, ctx.label(name));
  const video = h('video', { id: 'live-video', muted: true, playsinline: true, autoplay: true, 'aria-label': `Live video of ${ctx.label(name)}` });
  video.muted = true; // the attribute alone does not mute a video created from script
  const img = h('img', { id: 'live-mjpeg', alt: `Live picture of ${ctx.label(name)}`, hidden: true });
  const overlay = h('p', { class: 'overlay', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const stage = h('div', { class: 'stage', id: 'stage' }, video, img, overlay);

  const transport = h('output', { id: 'transport' }, '–');
  const latency = h('output', { id: 'latency' }, '–');
  const detail = h('output', { id: 'detail' }, '–');
  const path = h('output', { id: 'path' }, '–');
  const firstPicture = h('output', { id: 'first-frame' }, '–');
  const log = h('ul', { class: 'attempts', id: 'attempts', 'aria-label': 'Connection attempts' });

  const mute = h('button', { type: 'button', 'aria-pressed': 'false', disabled: true }, 'Unmute');
  const full = h('button', { type: 'button' }, 'Full screen');
  const snap = h('button', { type: 'button' }, 'Save snapshot');
  const record = h('button', { type: 'button' }, 'Record now');
  const retry = h('button', { type: 'button' }, 'Reconnect');
  const choose = h('select', { id: 'transport-choice' },
    h('option', { value: '' }, 'Automatic'),
    h('option', { value: 'webrtc' }, 'WebRTC only'),
    h('option', { value: 'hls' }, 'HLS only'),
    h('option', { value: 'mjpeg' }, 'MJPEG only'));
  choose.value = ORDER.includes(wanted) ? wanted : '';
  const talk = new TalkControl();

  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Doorbells'), ' · ',
      h('a', { href: `#/doorbell/${encodeURIComponent(name)}` }, 'Doorbell settings')),
    heading, stage,
    h('div', { class: 'controls', role: 'group', 'aria-label': 'Live view controls' },
      mute, full, snap, record, retry,
      h('label', { class: 'inline' }, 'Transport ', choose)),
    talk.element,
    h('dl', { class: 'facts-list' },
      h('dt', {}, 'Transport'), h('dd', {}, transport),
      h('dt', {}, 'Latency'), h('dd', {}, latency),
      h('dt', {}, 'Picture'), h('dd', {}, detail),
      h('dt', {}, 'Network path'), h('dd', {}, path),
      h('dt', {}, 'First picture'), h('dd', {}, firstPicture)),
    log);

  let player = null;
  let controller = null;
  let statsTimer = 0;
  let recording = false;
  let retries = 0;
  let gone = false;
  let lastFrames = -1;
  let stalled = 0;
  let settled = 0;
  // Opened as the page's first view: count from navigation start (performance.now() is 0
  // there); otherwise from opening the view.
  const openedAt = params.initial ? 0 : performance.now();
  let firstShown = false;

  function note(text) {
    log.prepend(h('li', {}, `${new Date().toLocaleTimeString()} ${text}`));
    while (log.children.length > 8) log.lastChild.remove();
  }

  function stopPlayer(options) {
    if (controller) controller.abort();
    controller = null;
    if (player) player.stop(options);
    player = null;
    clearInterval(statsTimer);
    stage.dataset.transport = '';
    mute.disabled = true;
    talk.setPlayer(null);
  }

  async function connect() {
    stopPlayer();
    const mine = new AbortController();
    controller = mine;
    const started = performance.now();
    for (const kind of order) {
      const next = kind === 'webrtc' ? new WebRtcPlayer(video, name)
        : kind === 'hls' ? new HlsPlayer(video, name) : new MjpegPlayer(img, name);
      player = next;
      video.hidden = kind === 'mjpeg';
      img.hidden = kind !== 'mjpeg';
      overlay.hidden = false;
      overlay.textContent = `Connecting over ${next.name}…`;
      fill(transport, `${next.name} (connecting)`);
      try {
        await next.start(mine.signal);
      } catch (err) {
        if (mine.signal.aborted || gone) return; // stopPlayer() already stopped it
        next.stop();
        note(`${next.name} failed: ${err.message}`);
        continue;
      }
      if (mine.signal.aborted || gone) { next.stop(); return; }
      const now = performance.now();
      const seconds = ((now - (firstShown ? started : openedAt)) / 1000).toFixed(2);
      const since = firstShown ? 'reconnecting' : params.initial ? 'the page started loading' : 'opening the view';
      fill(firstPicture, `${seconds} s after ${since}`);
      stage.dataset.firstFrameMs = String(Math.round(now - (firstShown ? started : openedAt)));
      firstShown = true;
      overlay.hidden = true;
      stage.dataset.transport = kind;
      fill(transport, next.name === 'HLS' ? `HLS (${next.mode})` : next.name);
      note(`playing over ${next.name}`);
      mute.disabled = kind === 'mjpeg' || !next.hasAudio;
      if (mute.disabled) mute.title = kind === 'mjpeg' ? 'MJPEG has no sound' : 'This stream has no sound';
      talk.setPlayer(next);
      statsTimer = setInterval(updateStats, STATS_MS);
      updateStats();
      return;
    }
    player = null;
    overlay.hidden = false;
    overlay.textContent = 'Could not play this doorbell over any transport. See the attempts below.';
    fill(transport, 'none');
  }

  /** Whether the video has shown no new frame for a while (a connection that went quiet). */
  function frozen(current) {
    if (current instanceof MjpegPlayer || !video.getVideoPlaybackQuality) return false;
    const frames = video.getVideoPlaybackQuality().totalVideoFrames;
    stalled = frames === lastFrames ? stalled + 1 : 0;
    lastFrames = frames;
    return stalled >= STALL_TICKS;
  }

  async function updateStats() {
    const current = player;
    if (!current) return;
    settled += 1;
    if (settled >= SETTLED_TICKS) retries = 0;
    if (!current.healthy || frozen(current)) {
      stalled = 0;
      settled = 0;
      if (retries >= MAX_RETRIES) {
        note(`${current.name} stopped; not retrying again (press Reconnect)`);
        stopPlayer();
        overlay.hidden = false;
        overlay.textContent = 'The live view stopped.';
        return;
      }
      retries += 1;
      note(`${current.name} stopped; reconnecting`);
      connect();
      return;
    }
    let stats = null;
    try { stats = await current.stats(); } catch { stats = null; }
    if (!stats || current !== player) return;
    fill(latency, stats.latencyMs === null
      ? (stats.latencyLabel || 'not known yet')
      : `${stats.latencyMs} ms (${stats.latencyLabel})`);
    fill(detail, [...stats.detail, stats.bitrate ? `${Math.round(stats.bitrate / 1000)} kbit/s` : null].filter(Boolean).join(' · ') || '–');
    fill(path, stats.path || '–');
  }

  mute.addEventListener('click', () => {
    video.muted = !video.muted;
    mute.textContent = video.muted ? 'Unmute' : 'Mute';
    mute.setAttribute('aria-pressed', String(!video.muted));
  });
  full.addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else stage.requestFullscreen().catch((err) => toast(`Full screen refused: ${err.message}`, 'error'));
  });
  snap.addEventListener('click', saveSnapshot);
  record.addEventListener('click', toggleRecording);
  retry.addEventListener('click', () => { retries = 0; connect(); });
  choose.addEventListener('change', () => {
    const query = choose.value ? `?transport=${choose.value}` : '';
    window.location.hash = `#/live/${encodeURIComponent(name)}${query}`;
  });

  async function saveSnapshot() {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const source = !img.hidden ? img : video;
    const width = source.videoWidth || source.naturalWidth;
    const height = source.videoHeight || source.naturalHeight;
    if (player && width) {
      // A grab of what is on screen: instant, and it wakes nothing.
      const canvas = h('canvas', { width, height });
      canvas.getContext('2d').drawImage(source, 0, 0, width, height);
      canvas.toBlob((blob) => blob && download(blob, `${name}-${stamp}.jpg`), 'image/jpeg', 0.92);
      return;
    }
    try {
      const response = await api(streamUrl.snapshot(name), { raw: true });
      download(await response.blob(), `${name}-${stamp}.jpg`);
    } catch (err) {
      toast(`No snapshot: ${err.message}`, 'error');
    }
  }

  function showRecording(on) {
    recording = on;
    record.textContent = on ? 'Stop recording' : 'Record now';
    record.setAttribute('aria-pressed', String(on));
  }

  async function toggleRecording() {
    record.disabled = true;
    try {
      if (!recording) {
        await api(`api/record?src=${encodeURIComponent(name)}`, { method: 'POST' });
        showRecording(true);
        toast('Recording started');
      } else {
        const result = await api(`api/record?src=${encodeURIComponent(name)}&action=stop`, { method: 'POST' });
        showRecording(false);
        toast(result.stopped ? 'Recording saved; see Clips' : 'Nothing was recording');
      }
    } catch (err) {
      toast(`Recording: ${err.message}`, 'error');
    } finally {
      record.disabled = false;
    }
  }

  async function loadState() {
    try {
      const [all, active] = await Promise.all([streams(), api('api/record')]);
      const info = all[name];
      if (!info) {
        stopPlayer();
        fill(root, h('h1', {}, 'No such doorbell'), h('p', {}, `There is no doorbell called “${name}”. `, h('a', { href: '#/' }, 'See them all')));
        return;
      }
      ctx.names.set(name, info.device || name);
      fill(heading, ctx.label(name));
      showRecording(active.recording.some((job) => job.device === name && job.manual));
    } catch { /* the player reports its own problems */ }
  }

  function onVisibility() {
    if (document.visibilityState === 'hidden') {
      stopPlayer();
      overlay.hidden = false;
      overlay.textContent = 'Paused while the page is hidden.';
      note('paused: page hidden');
    } else if (!player) {
      retries = 0;
      connect();
    }
  }

  // fetch(keepalive) outlives the page, which sendBeacon would too, but only fetch can DELETE.
  function onPageHide() { stopPlayer({ keepalive: true }); }
  function onPageShow(event) { if (event.persisted && !player) { retries = 0; connect(); } }

  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('pagehide', onPageHide);
  window.addEventListener('pageshow', onPageShow);
  loadState();
  if (document.visibilityState !== 'hidden') connect();
  else overlay.textContent = 'Paused while the page is hidden.';

  return () => {
    gone = true;
    talk.destroy();
    document.removeEventListener('visibilitychange', onVisibility);
    window.removeEventListener('pagehide', onPageHide);
    window.removeEventListener('pageshow', onPageShow);
    stopPlayer();
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  };
}
