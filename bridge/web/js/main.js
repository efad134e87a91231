// The page's shell: hash routes, the login gate, the shared event feed and the doorbell banner.

import { api, displayName, streams } from './api.js';
import { fill, h } from './dom.js';
import { EventFeed } from './feed.js';
import * as clips from './views/clips.js';
import * as doorbell from './views/doorbell.js';
import * as events from './views/events.js';
import * as home from './views/home.js';
import * as live from './views/live.js';
import * as login from './views/login.js';
import * as settings from './views/settings.js';
import * as status from './views/status.js';

const ROUTES = [
  { name: 'home', re: /^\/?$/, view: home, title: 'Doorbells' },
  { name: 'live', re: /^\/live\/([^/]+)$/, view: live, title: 'Live' },
  { name: 'doorbell', re: /^\/doorbell\/([^/]+)$/, view: doorbell, title: 'Doorbell settings' },
  { name: 'clips', re: /^\/clips$/, view: clips, title: 'Clips' },
  { name: 'events', re: /^\/events$/, view: events, title: 'Events' },
  { name: 'status', re: /^\/status$/, view: status, title: 'Status' },
  { name: 'settings', re: /^\/settings$/, view: settings, title: 'Settings' },
];
const BANNER_MS = 120000;

const main = document.getElementById('view');
const feed = new EventFeed();
const ctx = {
  config: null,
  feed,
  names: new Map(), // stream name -> display name
  /** The display name of a stream (falls back to the stream name). */
  label(name) { return this.names.get(name) || name; },
  async refreshNames() {
    const all = await streams();
    for (const [name, info] of Object.entries(all)) this.names.set(name, displayName(info));
    return all;
  },
};
let cleanup = null;
let bannerTimer = 0;
let started = false;
let routed = false; // whether a view was shown before (timings count from page load if not)

function parseHash() {
  const [rawPath, query = ''] = window.location.hash.replace(/^#/, '').split('?');
  let path = rawPath;
  try { path = decodeURIComponent(rawPath); } catch { /* a stray %: keep it as typed */ }
  return { path: path || '/', query: new URLSearchParams(query) };
}

function unmount() {
  if (cleanup) {
    try { cleanup(); } catch (err) { console.warn('view cleanup failed', err); }
  }
  cleanup = null;
}

function route() {
  unmount();
  const { path, query } = parseHash();
  let match = null;
  let found = ROUTES.find((r) => (match = r.re.exec(path)));
  if (!found) {
    found = { name: 'missing', title: 'Not found' };
  }
  for (const link of document.querySelectorAll('nav a[data-route]')) {
    if (link.dataset.route === found.name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.body.dataset.view = found.name;
  document.title = `${found.title} · SkyBell bridge`;
  fill(main);
  if (!found.view) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the doorbells')));
    return;
  }
  const params = { name: match && match[1], query, initial: !routed };
  cleanup = found.view.render(main, params, ctx) || null;
  // After a route change, screen readers start at the new view's heading.
  if (routed) main.querySelector('h1')?.focus({ preventScroll: true });
  routed = true;
}

function showBanner(event) {
  const banner = document.getElementById('banner');
  const name = event.device;
  const when = new Date(event.time);
  fill(banner,
    h('span', { class: 'banner-text' },
      h('strong', {}, `${ctx.label(name)}: someone is at the door`),
      ` (${when.toLocaleTimeString()})`),
    h('a', { class: 'button primary', href: `#/live/${encodeURIComponent(name)}`, onclick: hideBanner }, 'View live'),
    h('button', { type: 'button', class: 'small', onclick: hideBanner, 'aria-label': 'Dismiss' }, 'Dismiss'));
  banner.dataset.device = name;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(hideBanner, BANNER_MS);
}

function hideBanner() {
  document.getElementById('banner').hidden = true;
}

function showFeedState(state) {
  const el = document.getElementById('feed-state');
  el.dataset.state = state;
  el.textContent = state === 'open' ? 'Live events on' : state === 'connecting' ? 'Connecting…' : 'Events offline';
}

async function checkSession() {
  try {
    ctx.config = await api('api/config');
  } catch {
    return true; // the bridge is unreachable: keep the page; the feed retries
  }
  document.getElementById('lan-warning').hidden = !ctx.config.lan_without_password;
  if (ctx.config.auth && !ctx.config.authenticated) {
    gate();
    return false;
  }
  return true;
}

function gate() {
  started = false;
  feed.close();
  unmount();
  window.removeEventListener('hashchange', route);
  document.getElementById('logout').hidden = true;
  document.body.dataset.view = 'login';
  document.title = 'Log in · SkyBell bridge';
  fill(main);
  login.render(main, ctx, () => boot());
}

function start() {
  if (started) return;
  started = true;
  document.getElementById('logout').hidden = !ctx.config.auth;
  feed.connect();
  window.addEventListener('hashchange', route);
  ctx.refreshNames().catch(() => {});
  route();
}

async function boot() {
  if (await checkSession()) start();
}

feed.addEventListener('state', (e) => showFeedState(e.detail));
feed.addEventListener('lost', () => { checkSession(); });
feed.addEventListener('event', (e) => {
  if (e.detail.type === 'doorbell') showBanner(e.detail);
});
window.addEventListener('skybell:unauthorized', () => { checkSession(); });
// The skip link must not change the hash: that is the router's.
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
document.getElementById('logout').addEventListener('click', async () => {
  try { await api('api/logout', { method: 'POST' }); } catch { /* gone anyway */ }
  gate();
});
// When the page goes away, the views end their live sessions (see views/live.js); a page
// restored from the back-forward cache picks the feed up again.
window.addEventListener('pagehide', () => feed.close());
window.addEventListener('pageshow', (event) => { if (event.persisted && started) feed.connect(); });

boot();
