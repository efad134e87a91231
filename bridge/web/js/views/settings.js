// Settings (read-only): the URL of each stream for Frigate, Home Assistant and VLC, with copy
// buttons. Only public facts are shown; credentials are left as placeholders.

import { api, displayName, streams } from '../api.js';
import { copyButton, fill, h } from '../dom.js';

export function render(root, _params, ctx) {
  const body = h('div', { id: 'stream-urls' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', { tabindex: '-1' }, 'Settings'),
    h('p', {}, 'Paste these into other tools. They are read-only here: the bridge is configured in its TOML file or with environment variables.'),
    body);
  let gone = false;

  Promise.all([api('api/config'), streams()]).then(([config, all]) => {
    if (gone) return;
    ctx.config = config;
    // The page's own folder, so a reverse proxy's path prefix stays in every URL.
    const base = new URL('.', window.location.href);
    const http = base.href.replace(/\/$/, '');
    const rtspHost = config.rtsp_host || base.hostname.replace(/^\[|\]$/g, '');
    const rtspAuthority = `${rtspHost.includes(':') ? `[${rtspHost}]` : rtspHost}:${config.rtsp_port}`;
    const credentials = config.auth ? 'USER:PASSWORD@' : '';
    const httpWithCredentials = config.auth ? http.replace('//', `//${credentials}`) : http;
    const sections = Object.entries(all).map(([name, info]) => {
      const q = encodeURIComponent(name);
      const urls = [
        ['RTSP (Frigate, VLC, NVRs)', `rtsp://${credentials}${rtspAuthority}/${name}`],
        ['HLS (VLC, Safari, Home Assistant)', `${httpWithCredentials}/api/stream.m3u8?src=${q}`],
        ['MJPEG (Home Assistant MJPEG camera)', `${httpWithCredentials}/api/stream.mjpeg?src=${q}`],
        ['Snapshot (JPEG)', `${httpWithCredentials}/api/frame.jpeg?src=${q}`],
        ['WebRTC (WHEP, go2rtc-style clients)', `${http}/api/webrtc?src=${q}`],
      ];
      return h('section', { class: 'card urls', dataset: { stream: name } },
        h('h2', {}, displayName(info)),
        h('dl', {}, urls.map(([label, url]) => [
          h('dt', {}, label),
          h('dd', {}, h('code', {}, url), ' ', copyButton(url, `${label} URL of ${displayName(info)}`)),
        ])),
        h('details', {}, h('summary', {}, 'Examples'),
          example('Frigate (config.yml)', [
            'cameras:',
            `  ${name.replace(/-/g, '_')}:`,
            '    ffmpeg:',
            '      inputs:',
            `        - path: rtsp://${credentials}${rtspAuthority}/${name}`,
            '          roles: [detect, record]',
          ].join('\n')),
          example('Home Assistant (Generic Camera)', [
            `Still image URL: ${httpWithCredentials}/api/frame.jpeg?src=${q}`,
            `Stream source:   rtsp://${credentials}${rtspAuthority}/${name}`,
          ].join('\n')),
          example('VLC', `vlc rtsp://${credentials}${rtspAuthority}/${name}`)));
    });
    fill(body,
      config.auth
        ? h('p', { class: 'note' }, 'This bridge has a password: replace USER:PASSWORD with the configured username and password (tools that cannot put them in the URL can send HTTP Basic auth).')
        : h('p', { class: 'note' }, 'No password is set, so anyone who can reach these ports can watch. Set server.password before listening beyond this computer.'),
      config.rtsp_host === '127.0.0.1' || config.rtsp_host === '::1'
        ? h('p', { class: 'note' }, 'RTSP listens on this computer only (server.rtsp_host); other machines cannot use the RTSP URLs.')
        : null,
      sections);
  }).catch((err) => {
    fill(body, h('p', { class: 'error' }, `Could not load: ${err.message}`));
  });
  return () => { gone = true; };
}

function example(title, text) {
  return h('div', { class: 'example' }, h('h3', {}, title), h('pre', {}, h('code', {}, text)), copyButton(text, `${title} example`));
}
