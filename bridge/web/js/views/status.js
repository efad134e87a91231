// Status: every stream's state, viewers per output, codecs and incoming bitrate (from the
// change in bytes received between polls), active recordings, event sources, and the rules
// engine with its SwitchBot call budget when the bridge has one.

import { api, displayName } from '../api.js';
import { fill, fmtBitrate, fmtBytes, fmtDuration, fmtTime, h } from '../dom.js';

const POLL_MS = 2000;
const MAX_ERRORS = 20;

export function render(root, _params, ctx) {
  const grid = h('div', { class: 'grid wide', id: 'stream-status' });
  const recordings = h('div', { id: 'recordings' });
  const sources = h('div', { id: 'event-sources' });
  const errors = h('div', { id: 'recent-errors' });
  const automation = h('section', { id: 'automation', hidden: true, 'aria-labelledby': 'automation-h' });
  root.append(
    h('h1', { tabindex: '-1' }, 'Status'),
    h('section', { 'aria-labelledby': 'streams-h' }, h('h2', { id: 'streams-h' }, 'Streams'), grid),
    h('section', { 'aria-labelledby': 'errors-h' }, h('h2', { id: 'errors-h' }, 'Recent errors'),
      h('p', { class: 'muted' }, 'Seen since this page was opened.'), errors),
    h('section', { 'aria-labelledby': 'rec-h' }, h('h2', { id: 'rec-h' }, 'Recording now'), recordings),
    automation,
    h('section', { 'aria-labelledby': 'src-h' }, h('h2', { id: 'src-h' }, 'Event sources'), sources));

  const previous = new Map(); // name -> {bytes, at}
  const lastError = new Map();
  const seenErrors = [];
  let timer = 0;
  let gone = false;

  async function poll() {
    const automationOn = ctx.config && ctx.config.features && ctx.config.features.automation;
    const [all, active, stats, rules] = await Promise.all([
      api('api/streams').catch((err) => ({ __error: err })),
      api('api/record').catch(() => null),
      api('api/events/stats').catch(() => null),
      automationOn ? api('api/automation').catch(() => null) : null,
    ]);
    if (gone) return;
    if (all.__error) {
      fill(grid, h('p', { class: 'error' }, `Could not read the streams: ${all.__error.message}`));
    } else {
      fill(grid, Object.entries(all).map(([name, info]) => streamCard(name, info)));
    }
    fill(recordings, recordingList(active));
    fill(sources, sourceFacts(stats));
    drawAutomation(rules);
    fill(errors, seenErrors.length
      ? h('ol', { class: 'errors' }, seenErrors.map((e) => h('li', {}, `${fmtTime(e.at)} ${e.name}: ${e.error}`)))
      : h('p', { class: 'muted' }, 'None.'));
    timer = setTimeout(poll, POLL_MS);
  }

  function streamCard(name, info) {
    ctx.names.set(name, displayName(info));
    const now = performance.now();
    const prev = previous.get(name);
    let bitrate = null;
    if (prev && info.bytes_in >= prev.bytes && now > prev.at) bitrate = ((info.bytes_in - prev.bytes) * 8) / ((now - prev.at) / 1000);
    previous.set(name, { bytes: info.bytes_in, at: now });
    if (info.error && lastError.get(name) !== info.error) {
      seenErrors.unshift({ at: new Date(), name: displayName(info), error: info.error });
      seenErrors.length = Math.min(seenErrors.length, MAX_ERRORS);
    }
    lastError.set(name, info.error);
    const viewers = Object.entries(info.viewers || {}).map(([output, n]) => `${output} ${n}`).join(', ') || 'none';
    const codecs = Object.entries(info.codecs || {}).map(([kind, codec]) => `${kind} ${codec}`).join(', ') || '–';
    const webrtc = info.webrtc ? `${info.webrtc.sessions} of ${info.webrtc.limit}` : '–';
    const mjpeg = info.mjpeg && info.mjpeg.viewers !== undefined ? `${info.mjpeg.viewers} (decoding ${info.mjpeg.decoding})` : '0';
    return h('article', { class: 'card', dataset: { stream: name } },
      h('h3', {}, displayName(info), ' ', h('span', { class: `badge state-${info.state}` }, info.state)),
      info.error ? h('p', { class: 'error' }, info.error) : null,
      h('dl', { class: 'facts-list' },
        h('dt', {}, 'Device'), h('dd', {}, `${info.online === false ? 'offline' : 'online'}${info.battery != null ? `, battery ${info.battery}%` : ''}`),
        h('dt', {}, 'Viewers'), h('dd', { dataset: { field: 'viewers' } }, viewers),
        h('dt', {}, 'WebRTC sessions'), h('dd', {}, webrtc),
        h('dt', {}, 'MJPEG viewers'), h('dd', {}, mjpeg),
        h('dt', {}, 'Codecs'), h('dd', {}, codecs),
        h('dt', {}, 'Bitrate in'), h('dd', { dataset: { field: 'bitrate' } }, info.state === 'live' && bitrate !== null ? fmtBitrate(bitrate) : '–'),
        h('dt', {}, 'Received'), h('dd', {}, fmtBytes(info.bytes_in)),
        h('dt', {}, 'Uptime'), h('dd', {}, info.state === 'live' ? fmtDuration(info.uptime) : '–'),
        h('dt', {}, 'Reconnects'), h('dd', {}, String(info.reconnects))));
  }

  function drawAutomation(rules) {
    automation.hidden = !rules;
    if (!rules) return;
    const budget = rules.switchbot;
    fill(automation,
      h('h2', { id: 'automation-h' }, 'Automation'),
      budget ? h('p', {}, h('label', { for: 'budget' }, `SwitchBot calls today: ${budget.used} of ${budget.limit} `),
        h('meter', { id: 'budget', min: 0, max: budget.limit, value: budget.used, high: budget.warn_at, optimum: 0 }),
        ` ${budget.remaining} left, resets ${new Date(budget.resets_at).toLocaleString()}`) : null,
      (rules.rules || []).length
        ? h('ul', { class: 'rules' }, rules.rules.map((rule) => h('li', {},
          h('strong', {}, rule.name), rule.enabled === false ? ' (off)' : '',
          ` — fired ${rule.fired} time${rule.fired === 1 ? '' : 's'}`,
          rule.last_fired ? `, last ${new Date(rule.last_fired).toLocaleString()}` : '',
          rule.skipped ? `; skipped ${rule.skipped.window || 0} outside its hours, ${rule.skipped.cooldown || 0} in cooldown` : '',
          (rule.last_results || []).length ? h('ul', { class: 'results' }, rule.last_results.map((r) => h('li', { class: r.ok ? 'ok' : 'failed' },
            `${r.ok ? '✓' : '✗'} ${r.action}${r.detail ? ` — ${r.detail}` : ''}`))) : null)))
        : h('p', { class: 'muted' }, 'No rules.'));
  }

  poll();
  return () => { gone = true; clearTimeout(timer); };
}

function recordingList(active) {
  if (!active) return h('p', { class: 'muted' }, 'Unknown.');
  if (!active.recording.length) return h('p', { class: 'muted' }, 'Nothing.');
  return h('ul', {}, active.recording.map((job) => h('li', {},
    `${job.device}: ${job.manual ? 'manual' : job.event}, ${fmtDuration(job.seconds)} so far, ends in ${fmtDuration(job.ends_in)}`)));
}

function sourceFacts(stats) {
  if (!stats) return h('p', { class: 'muted' }, 'Unknown.');
  const items = [];
  if (stats.bus) items.push(h('li', {}, `Events: ${stats.bus.new ?? 0} new, ${stats.bus.duplicates ?? 0} duplicates merged`));
  if (stats.poll) items.push(h('li', {}, `Cloud polling: ${stats.poll.available ? 'working' : 'unavailable'}, ${stats.poll.failures} failures`));
  if (stats.udp) items.push(h('li', {}, `UDP listener on port ${stats.udp.port}`));
  return h('ul', {}, items.length ? items : h('li', {}, 'No sources.'));
}
