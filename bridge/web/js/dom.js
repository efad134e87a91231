// Small DOM helpers. Text goes in as text nodes, never as HTML, so names and error messages
// from the bridge or the cloud cannot inject markup.

/** Build an element: h('button', {class: 'x', onclick: fn}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value; // properties such as muted, checked, disabled
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function fmtBitrate(bitsPerSecond) {
  if (!Number.isFinite(bitsPerSecond)) return '–';
  if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bitsPerSecond / 1e3)} kbit/s`;
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });

export function fmtTime(date) { return timeFmt.format(date); }
export function fmtDay(date) { return dayFmt.format(date); }

/** "3 min ago" style text for a Date. */
export function fmtAgo(date, now = Date.now()) {
  const s = Math.max(0, (now - date.getTime()) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return dayFmt.format(date);
}

/** Human words for an event type. */
export function eventLabel(type) {
  return { doorbell: 'Doorbell press', motion: 'Motion', manual: 'Manual recording',
    lstream: 'Live view started', availability: 'Online state changed',
    'switchbot.motion': 'Motion sensor', 'switchbot.motion.clear': 'Motion sensor clear',
    'switchbot.contact.open': 'Opened', 'switchbot.contact.close': 'Closed',
    'switchbot.contact.left_open': 'Left open', 'switchbot.lock.locked': 'Locked',
    'switchbot.lock.unlocked': 'Unlocked', 'switchbot.lock.jammed': 'Lock jammed',
    'switchbot.keypad.create_key': 'Keypad: passcode added',
    'switchbot.keypad.delete_key': 'Keypad: passcode removed' }[type]
    || (type.startsWith('switchbot.') ? `SwitchBot ${type.slice(10).replaceAll(/[._]/g, ' ')}` : type);
}

/** Where an event happened: a doorbell's name, or a SwitchBot device's own name. */
export function eventPlace(event, label) {
  const name = event.payload && event.payload.name;
  return event.type.startsWith('switchbot.') ? (name || `SwitchBot ${event.device}`) : label(event.device);
}

let toastTimer = 0;
/** A short message in the page's polite live region. */
export function toast(message, kind = 'info') {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

/** Copy text; the clipboard API needs a secure context, which http://LAN-IP is not. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch { /* fall through */ }
  }
  const area = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' }, text);
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  area.remove();
  return ok;
}

/** A button that copies `text` and says so. */
export function copyButton(text, label) {
  const button = h('button', { type: 'button', class: 'small', 'aria-label': `Copy ${label}` }, 'Copy');
  button.addEventListener('click', async () => {
    const ok = await copyText(text);
    button.textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
  return button;
}

/** Save a Blob under a file name. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, class: 'offscreen' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
