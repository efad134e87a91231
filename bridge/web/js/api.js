// Talking to the bridge's HTTP API. Every call is same-origin, so the session cookie rides
// along; a 401 tells the app to show the login form.

export class HttpError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.body = body;
  }
}

/** Fetch `path`; returns parsed JSON (or the Response with `raw`), throws HttpError. */
export async function api(path, { method = 'GET', json, body, headers = {}, signal, raw = false, keepalive = false } = {}) {
  const init = { method, headers: { ...headers }, signal, keepalive, credentials: 'same-origin' };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let detail = null;
    try { detail = await response.json(); } catch { detail = null; }
    if (response.status === 401 && !path.startsWith('api/login')) {
      window.dispatchEvent(new CustomEvent('skybell:unauthorized'));
    }
    const message = (detail && detail.error) || `${response.status} ${response.statusText}`;
    throw new HttpError(response.status, message, detail);
  }
  if (raw) return response;
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/** A URL the bridge gives as "/api/..." made relative to the page, so a path prefix added
 *  by a reverse proxy is kept. */
export function relative(url) {
  return typeof url === 'string' ? url.replace(/^\/+/, '') : url;
}

/** `path` with a query string built from an object (empty values left out). */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const streamUrl = {
  snapshot: (src) => withQuery('api/frame.jpeg', { src }),
  mjpeg: (src) => withQuery('api/stream.mjpeg', { src }),
  hls: (src) => withQuery('api/stream.m3u8', { src }),
  webrtc: (src) => withQuery('api/webrtc', { src }),
};

/** The streams keyed by name, as /api/streams gives them. */
export function streams(signal) {
  return api('api/streams', { signal });
}

/** The display name of a stream entry. */
export function displayName(stream) {
  return (stream && (stream.device || stream.name)) || '';
}
