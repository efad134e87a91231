// Events: the log, newest first, kept live by the shared feed; each event lists what the
// rules did about it (the results reach the log a moment after the event, so the list is
// re-read shortly after each new one).

import { api, streams, withQuery } from '../api.js';
import { eventLabel, eventPlace, fill, fmtDay, fmtTime, h } from '../dom.js';

const PAGE = 50;
const RESULTS_DELAY_MS = 3000;
const TYPES = ['doorbell', 'motion', 'lstream', 'availability', 'vready', 'telemetry', 'ota', 'devicedeleted', 'unknown',
  'switchbot.motion', 'switchbot.contact.open', 'switchbot.contact.close', 'switchbot.lock.locked', 'switchbot.lock.unlocked'];

export function render(root, params, ctx) {
  const device = h('select', { id: 'event-device' }, h('option', { value: '' }, 'All doorbells'));
  const type = h('select', { id: 'event-type' }, h('option', { value: '' }, 'All types'),
    ...TYPES.map((t) => h('option', { value: t }, eventLabel(t))));
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter events' },
    h('label', {}, 'Doorbell ', device), h('label', {}, 'Type ', type));
  const list = h('ol', { class: 'event-list', id: 'event-list', 'aria-live': 'polite' });
  const status = h('p', { class: 'muted', role: 'status' });
  const more = h('button', { type: 'button', hidden: true }, 'Load older events');
  root.append(h('h1', { tabindex: '-1' }, 'Events'), filters, status, list, more);

  let events = [];
  // Events the feed brought that no loaded page has listed yet: a page requested just before a
  // press answers without it, and must not wipe it from the list until the next re-read.
  const fresh = new Map();
  let nextOffset = null;
  let refreshTimer = 0;
  let gone = false;

  streams().then((all) => {
    for (const [name, info] of Object.entries(all)) device.append(h('option', { value: name }, info.device || name));
  }).catch(() => {});

  async function load(reset) {
    const offset = reset ? 0 : nextOffset || 0;
    list.setAttribute('aria-busy', 'true');
    try {
      const page = await api(withQuery('api/events', { device: device.value, type: type.value, limit: reset ? Math.min(500, Math.max(PAGE, events.length)) : PAGE, offset }));
      if (gone) return;
      for (const event of page.events) fresh.delete(event.id);
      const unlisted = [...fresh.values()].filter(matches).reverse();
      events = reset ? unlisted.concat(page.events) : events.concat(page.events);
      nextOffset = page.next_offset;
      more.hidden = nextOffset === null;
      status.textContent = events.length ? '' : 'No events yet. A doorbell press or motion shows up here at once.';
      draw();
    } catch (err) {
      status.textContent = `Could not load events: ${err.message}`;
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  }

  function draw() {
    fill(list, events.map(item));
  }

  function item(event) {
    const when = new Date(event.time);
    const results = event.results || [];
    return h('li', { class: `event ev-${event.type}`, dataset: { id: event.id } },
      h('div', { class: 'event-head' },
        h('span', { class: `badge ev-${event.type}` }, eventLabel(event.type)),
        h('strong', {}, eventPlace(event, (d) => ctx.label(d))),
        h('time', { datetime: event.time }, `${fmtDay(when)} ${fmtTime(when)}`),
        h('span', { class: 'muted' }, `via ${(event.sources || [event.source]).join(', ')}`)),
      results.length
        ? h('ul', { class: 'results', 'aria-label': 'Rule actions' }, results.map((r) => h('li', { class: r.ok ? 'ok' : 'failed' },
          h('span', { class: 'sr-only' }, r.ok ? 'Succeeded: ' : 'Failed: '),
          h('span', { 'aria-hidden': 'true' }, r.ok ? '✓ ' : '✗ '),
          `${r.action}${r.detail ? ` — ${r.detail}` : ''}`)))
        : null,
      event.type === 'doorbell' ? h('a', { class: 'button small', href: `#/live/${encodeURIComponent(event.device)}` }, 'View live') : null);
  }

  function matches(event) {
    return (!device.value || device.value === event.device || device.value === event.device_id)
      && (!type.value || type.value === event.type);
  }

  function onEvent(e) {
    const event = e.detail;
    if (!event.id || !matches(event)) return;
    const known = events.findIndex((x) => x.id === event.id);
    if (known >= 0) events[known] = { ...events[known], ...event };
    else events.unshift(event);
    fresh.set(event.id, events[known >= 0 ? known : 0]);
    status.textContent = '';
    draw();
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => load(true), RESULTS_DELAY_MS);
  }

  filters.addEventListener('change', () => load(true));
  more.addEventListener('click', () => load(false));
  ctx.feed.addEventListener('event', onEvent);
  load(true);
  return () => {
    gone = true;
    clearTimeout(refreshTimer);
    ctx.feed.removeEventListener('event', onEvent);
  };
}
