// Clips: a 24-hour timeline per day with thumbnails, filters, and a player that seeks (the
// bridge answers HTTP Range requests), download and delete.

import { api, relative, streams, withQuery } from '../api.js';
import { eventLabel, fill, fmtBytes, fmtDay, fmtDuration, fmtTime, h, toast } from '../dom.js';

const PAGE = 100;

export function render(root, params, ctx) {
  const device = h('select', { id: 'clip-device' }, h('option', { value: '' }, 'All doorbells'));
  const event = h('select', { id: 'clip-event' },
    h('option', { value: '' }, 'All events'),
    ...['doorbell', 'motion', 'manual'].map((t) => h('option', { value: t }, eventLabel(t))));
  const source = h('select', { id: 'clip-source' },
    h('option', { value: '' }, 'Recorded here and in the cloud'),
    h('option', { value: 'live' }, 'Recorded here'),
    h('option', { value: 'cloud' }, 'Cloud archive'));
  device.value = params.query.get('device') || '';
  event.value = params.query.get('event') || '';
  source.value = params.query.get('source') || '';
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter clips' },
    h('label', {}, 'Doorbell ', device),
    h('label', {}, 'Event ', event),
    h('label', {}, 'Source ', source));
  const player = h('section', { class: 'clip-player card', id: 'clip-player', hidden: true, 'aria-label': 'Clip player' });
  const days = h('div', { id: 'days' });
  const more = h('button', { type: 'button', hidden: true }, 'Load older clips');
  const status = h('p', { class: 'muted', role: 'status' });
  root.append(h('h1', { tabindex: '-1' }, 'Clips'), filters, player, status, days, more);

  let clips = [];
  let cursor = null;
  let selected = null;
  let gone = false;

  streams().then((all) => {
    for (const [name, info] of Object.entries(all)) {
      ctx.names.set(name, info.device || name);
      device.append(h('option', { value: name }, info.device || name));
    }
    device.value = params.query.get('device') || '';
  }).catch(() => {});

  async function load(reset) {
    if (reset) { clips = []; cursor = null; }
    status.textContent = 'Loading…';
    try {
      const page = await api(withQuery('api/clips', {
        device: device.value, event: event.value, source: source.value, limit: PAGE, cursor,
      }));
      if (gone) return;
      // A clip still being written has no playable end yet; it shows up once done.
      clips = clips.concat(page.clips.filter((c) => c.state !== 'recording'));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = clips.length ? `${clips.length} clip${clips.length === 1 ? '' : 's'}` : 'No clips match.';
      draw();
    } catch (err) {
      status.textContent = `Could not load clips: ${err.message}`;
    }
  }

  function draw() {
    const byDay = new Map();
    for (const clip of clips) {
      const start = new Date(clip.start * 1000);
      const key = start.toDateString();
      if (!byDay.has(key)) byDay.set(key, { date: start, clips: [] });
      byDay.get(key).clips.push(clip);
    }
    fill(days, [...byDay.values()].map((day) => drawDay(day)));
  }

  function drawDay({ date, clips: list }) {
    const midnight = new Date(date);
    midnight.setHours(0, 0, 0, 0);
    const dayStart = midnight.getTime() / 1000;
    const dayLength = 86400;
    const timeline = h('div', { class: 'timeline', role: 'group', 'aria-label': `Clips on ${fmtDay(date)} by time of day` },
      ...[0, 6, 12, 18].map((hour) => {
        const tick = h('span', { class: 'tick', 'aria-hidden': 'true' }, `${String(hour).padStart(2, '0')}:00`);
        tick.style.left = `${(hour / 24) * 100}%`;
        return tick;
      }),
      ...list.map((clip) => {
        const marker = h('button', {
          type: 'button', class: `marker ev-${clip.event}${clip.source === 'cloud' ? ' cloud' : ''}`,
          'aria-label': `${eventLabel(clip.event)} at ${fmtTime(new Date(clip.start * 1000))}`,
          onclick: () => select(clip),
        });
        marker.style.left = `${Math.min(99.5, ((clip.start - dayStart) / dayLength) * 100)}%`;
        marker.style.width = `max(6px, ${((clip.duration || 0) / dayLength) * 100}%)`;
        return marker;
      }));
    const items = list.map((clip) => h('li', {},
      h('button', { type: 'button', class: 'clip', dataset: { clip: clip.id }, onclick: () => select(clip),
        'aria-label': `${eventLabel(clip.event)} at ${ctx.label(clip.device)}, ${fmtTime(new Date(clip.start * 1000))}` },
      clip.thumbnail_url
        ? h('img', { src: relative(clip.thumbnail_url), alt: '', loading: 'lazy', width: 160, height: 90 })
        : h('span', { class: 'no-thumb', 'aria-hidden': 'true' }, 'no picture'),
      h('span', { class: 'clip-time' }, fmtTime(new Date(clip.start * 1000))),
      h('span', { class: 'clip-what' }, `${eventLabel(clip.event)} · ${ctx.label(clip.device)}`),
      h('span', { class: 'clip-len' }, fmtDuration(clip.duration)),
      clip.source === 'cloud' ? h('span', { class: 'badge cloud' }, 'cloud') : null,
      clip.state === 'failed' ? h('span', { class: 'badge bad' }, 'incomplete') : null)));
    return h('section', { class: 'day' }, h('h2', {}, fmtDay(date)), timeline, h('ul', { class: 'clip-list' }, items));
  }

  function select(clip) {
    selected = clip;
    const when = new Date(clip.start * 1000);
    const video = h('video', { id: 'clip-video', controls: true, preload: 'metadata', playsinline: true, src: relative(clip.video_url),
      'aria-label': `${eventLabel(clip.event)} at ${ctx.label(clip.device)}, ${when.toLocaleString()}` });
    const remove = h('button', { type: 'button', class: 'danger', id: 'clip-delete' }, 'Delete');
    remove.addEventListener('click', () => removeClip(clip));
    fill(player,
      h('h2', {}, `${eventLabel(clip.event)} · ${ctx.label(clip.device)}`),
      video,
      h('p', { class: 'muted' },
        `${when.toLocaleString()} · ${fmtDuration(clip.duration)} · ${fmtBytes(clip.size)}`,
        clip.source === 'cloud' ? ' · from the SkyBell cloud archive' : '',
        clip.preroll ? ` · includes ${clip.preroll.toFixed(1)} s before the event` : ''),
      h('div', { class: 'controls' },
        h('a', { class: 'button', href: relative(clip.video_url), download: `${clip.device}-${clip.start_iso.replace(/[:.]/g, '-')}.mp4` }, 'Download'),
        remove,
        h('button', { type: 'button', onclick: closePlayer }, 'Close')));
    player.hidden = false;
    player.scrollIntoView({ block: 'nearest' });
    video.focus();
  }

  function closePlayer() {
    const video = player.querySelector('video');
    if (video) { video.pause(); video.removeAttribute('src'); video.load(); }
    player.hidden = true;
    selected = null;
  }

  async function removeClip(clip) {
    const when = new Date(clip.start * 1000).toLocaleString();
    if (!window.confirm(`Delete the clip of ${ctx.label(clip.device)} from ${when}? This cannot be undone.`)) return;
    try {
      await api(`api/clips/${clip.id}`, { method: 'DELETE' });
    } catch (err) {
      toast(`Could not delete: ${err.message}`, 'error');
      return;
    }
    if (selected && selected.id === clip.id) closePlayer();
    clips = clips.filter((c) => c.id !== clip.id);
    status.textContent = clips.length ? `${clips.length} clip${clips.length === 1 ? '' : 's'}` : 'No clips match.';
    draw();
    toast('Clip deleted');
  }

  filters.addEventListener('change', () => {
    const query = withQuery('', { device: device.value, event: event.value, source: source.value });
    history.replaceState(null, '', `#/clips${query}`);
    closePlayer();
    load(true);
  });
  more.addEventListener('click', () => load(false));
  load(true);
  return () => { gone = true; closePlayer(); };
}
