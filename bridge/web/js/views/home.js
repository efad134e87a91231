// Home: a card per doorbell. A card shows a picture only when the doorbell's live view is
// already running for someone else; otherwise it waits for "Load snapshot", because asking
// for a picture wakes the doorbell (battery) or the cloud for it.

import { api, displayName, streams, streamUrl } from '../api.js';
import { eventLabel, fill, fmtAgo, h } from '../dom.js';

const POLL_MS = 5000;
const REFRESH_MS = 10000;

/** Whether anything other than our own snapshot decoder is watching the stream. */
function watched(info) {
  return info.state === 'live' && Object.entries(info.viewers || {}).some(([name, n]) => name !== 'mjpeg' && n > 0);
}

export function render(root, _params, ctx) {
  const grid = h('div', { class: 'grid', id: 'doorbells' });
  const note = h('p', { class: 'muted' });
  root.append(h('h1', { tabindex: '-1' }, 'Doorbells'), note, grid);
  const cards = new Map();
  const lastEvent = new Map();
  let timer = 0;
  let gone = false;

  async function loadEvents() {
    try {
      const page = await api('api/events?limit=200');
      for (const event of page.events.slice().reverse()) remember(event);
    } catch { /* the log may be off: cards just show no last event */ }
  }

  function remember(event) {
    if (!['doorbell', 'motion'].includes(event.type)) return;
    const prev = lastEvent.get(event.device);
    if (!prev || new Date(prev.time) <= new Date(event.time)) lastEvent.set(event.device, event);
  }

  async function poll() {
    try {
      const all = await streams();
      if (gone) return;
      note.textContent = Object.keys(all).length ? '' : 'No doorbells on this account.';
      for (const [name, info] of Object.entries(all)) {
        ctx.names.set(name, displayName(info));
        let card = cards.get(name);
        if (!card) {
          card = makeCard(name);
          cards.set(name, card);
          grid.append(card.el);
        }
        card.update(info, lastEvent.get(name));
      }
    } catch (err) {
      note.textContent = `Could not load the doorbells: ${err.message}`;
    }
    if (!gone) timer = setTimeout(poll, POLL_MS);
  }

  function onEvent(e) {
    remember(e.detail);
    const card = cards.get(e.detail.device);
    if (card && card.info) card.update(card.info, lastEvent.get(e.detail.device));
  }

  ctx.feed.addEventListener('event', onEvent);
  loadEvents().then(poll);
  return () => {
    gone = true;
    clearTimeout(timer);
    ctx.feed.removeEventListener('event', onEvent);
    for (const card of cards.values()) card.dispose();
  };
}

function makeCard(name) {
  const title = h('h2', {}, h('a', { href: `#/live/${encodeURIComponent(name)}` }, name));
  const picture = h('div', { class: 'thumb' });
  const facts = h('p', { class: 'facts' });
  const last = h('p', { class: 'last-event' });
  const settingsLink = h('a', { class: 'button', href: `#/doorbell/${encodeURIComponent(name)}`, 'aria-label': `Doorbell settings of ${name}` }, 'Settings');
  const el = h('article', { class: 'card doorbell', dataset: { stream: name } },
    picture, title, facts, last,
    h('div', { class: 'controls' },
      h('a', { class: 'button primary', href: `#/live/${encodeURIComponent(name)}` }, 'View live'),
      settingsLink));
  let objectUrl = null;
  let loadedAt = 0;
  let loading = false;
  let source = '';
  let error = '';

  async function loadSnapshot() {
    loading = true;
    error = '';
    render();
    try {
      const response = await api(streamUrl.snapshot(name), { raw: true });
      source = response.headers.get('X-Snapshot-Source') || '';
      const blob = await response.blob();
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(blob);
      loadedAt = Date.now();
    } catch (err) {
      error = err.message;
    } finally {
      loading = false;
      render();
    }
  }

  let info = null;
  function render() {
    const label = info ? displayName(info) : name;
    if (objectUrl) {
      fill(picture, h('img', { src: objectUrl, alt: `Snapshot of ${label}` }),
        source ? h('span', { class: 'tag' }, source === 'cloud' ? 'cloud snapshot' : source) : null);
      return;
    }
    fill(picture, h('div', { class: 'placeholder' },
      h('p', {}, loading ? 'Waking the doorbell…' : error || 'No picture yet'),
      h('button', { type: 'button', class: 'small', disabled: loading, onclick: loadSnapshot,
        'aria-label': `Load snapshot of ${label}` }, 'Load snapshot')));
  }

  const card = {
    el,
    info: null,
    update(next, event) {
      info = next;
      card.info = next;
      const label = displayName(next);
      fill(title.firstChild, label);
      settingsLink.setAttribute('aria-label', `Doorbell settings of ${label}`);
      const bits = [h('span', { class: `badge ${next.online === false ? 'bad' : 'good'}` }, next.online === false ? 'Offline' : 'Online')];
      if (next.battery !== null && next.battery !== undefined) bits.push(h('span', { class: 'badge' }, `Battery ${next.battery}%`));
      bits.push(h('span', { class: `badge state-${next.state}` }, next.state));
      fill(facts, bits);
      fill(last, event ? `${eventLabel(event.type)} · ${fmtAgo(new Date(event.time))}` : 'No recent events');
      // Refresh the picture only while someone else keeps the live view running anyway.
      if (watched(next) && !loading && Date.now() - loadedAt > REFRESH_MS) loadSnapshot();
      else render();
    },
    dispose() { if (objectUrl) URL.revokeObjectURL(objectUrl); },
  };
  render();
  return card;
}
