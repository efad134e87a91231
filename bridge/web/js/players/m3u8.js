// Just enough of an HLS playlist parser for the bridge's own LL-HLS playlists (RFC 8216bis):
// the variant of a multivariant playlist, and a media playlist's init section, segments and
// parts with their media sequence numbers.

function attributes(text) {
  const out = {};
  const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    out[m[1]] = m[2].startsWith('"') ? m[2].slice(1, -1) : m[2];
  }
  return out;
}

function tag(line) {
  const colon = line.indexOf(':');
  return colon < 0 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 1)];
}

/** The first variant of a multivariant playlist: {uri, codecs, resolution}, URIs made absolute. */
export function parseMultivariant(text, base) {
  const lines = text.split(/\r?\n/);
  if (lines[0].trim() !== '#EXTM3U') throw new Error('not an HLS playlist');
  for (let i = 0; i < lines.length; i += 1) {
    const [name, value] = tag(lines[i].trim());
    if (name !== '#EXT-X-STREAM-INF') continue;
    const attrs = attributes(value);
    const uri = (lines.slice(i + 1).find((l) => l.trim() && !l.startsWith('#')) || '').trim();
    return { uri: new URL(uri, base).href, codecs: attrs.CODECS || '', resolution: attrs.RESOLUTION || '' };
  }
  // A media playlist given where a multivariant one was expected is usable as is.
  return { uri: base, codecs: '', resolution: '' };
}

/**
 * A media playlist: {segments: [{msn, uri|null, duration, parts: [{uri, duration, independent}],
 * map}], canBlock, partTarget, targetDuration, ended}. The last segment has uri null while it
 * is still being built (only its parts are listed).
 */
export function parseMedia(text, base) {
  const lines = text.split(/\r?\n/);
  if (lines[0].trim() !== '#EXTM3U') throw new Error('not an HLS playlist');
  const out = { segments: [], canBlock: false, partTarget: 0, targetDuration: 2, ended: false };
  let msn = 0;
  let map = null;
  let parts = [];
  let duration = null;
  const abs = (uri) => new URL(uri, base).href;
  for (const raw of lines.slice(1)) {
    const line = raw.trim();
    if (!line) continue;
    if (!line.startsWith('#')) {
      out.segments.push({ msn, uri: abs(line), duration: duration || 0, parts, map });
      msn += 1;
      parts = [];
      duration = null;
      continue;
    }
    const [name, value] = tag(line);
    switch (name) {
      case '#EXT-X-MEDIA-SEQUENCE': msn = parseInt(value, 10) || 0; break;
      case '#EXT-X-TARGETDURATION': out.targetDuration = parseFloat(value) || 2; break;
      case '#EXT-X-PART-INF': out.partTarget = parseFloat(attributes(value)['PART-TARGET']) || 0; break;
      case '#EXT-X-SERVER-CONTROL': out.canBlock = attributes(value)['CAN-BLOCK-RELOAD'] === 'YES'; break;
      case '#EXT-X-MAP': map = abs(attributes(value).URI); break;
      case '#EXTINF': duration = parseFloat(value); break;
      case '#EXT-X-ENDLIST': out.ended = true; break;
      case '#EXT-X-PART': {
        const attrs = attributes(value);
        parts.push({ uri: abs(attrs.URI), duration: parseFloat(attrs.DURATION) || 0, independent: attrs.INDEPENDENT === 'YES' });
        break;
      }
      default: break;
    }
  }
  if (parts.length) out.segments.push({ msn, uri: null, duration: 0, parts, map });
  return out;
}
