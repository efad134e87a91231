// Doorbell settings: one doorbell's LED, chimes, tone, motion and video controls, built from
// the table the bridge sends (labels, ranges, options). Each change is sent alone, in order,
// and the controls then show what the SkyBell cloud confirms; a refused or unanswered change
// shows its error next to the control, which goes back to the last confirmed value.

import { api } from '../api.js';
import { fill, h } from '../dom.js';

const GROUPS = ['Light', 'Chimes', 'Motion', 'Camera and sound'];

export function render(root, params, ctx) {
  const name = params.name;
  const url = `api/devices/${encodeURIComponent(name)}`;
  const heading = h('h1', { tabindex: '-1' }, `${ctx.label(name)}: settings`);
  const status = h('p', { id: 'settings-status', class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Loading…');
  const body = h('div', { id: 'device-settings' });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Doorbells'), ' · ',
      h('a', { href: `#/live/${encodeURIComponent(name)}` }, 'Live view')),
    heading,
    h('p', {}, 'Changes go to the doorbell through the SkyBell cloud; what is shown is what the cloud confirms.'),
    status, body);

  const fields = new Map(); // key -> {info, input, error}
  let confirmed = {};
  let queue = Promise.resolve();
  let gone = false;

  function build(controls) {
    const sets = new Map(GROUPS.map((group) => [group, []]));
    for (const info of controls) {
      if (!sets.has(info.group)) sets.set(info.group, []);
      sets.get(info.group).push(field(info));
    }
    fill(body,
      [...sets].filter(([, items]) => items.length).map(([group, items]) =>
        h('fieldset', { class: 'card setting-group' }, h('legend', {}, group), items)),
      rebootSection());
  }

  function field(info) {
    const id = `ctl-${info.key}`;
    const error = h('p', { class: 'error field-error', id: `err-${info.key}`, role: 'alert', hidden: true });
    const help = info.help ? h('small', { class: 'help', id: `help-${info.key}` }, info.help) : null;
    const described = [help && help.id, error.id].filter(Boolean).join(' ');
    let input;
    let row;
    if (info.kind === 'bool') {
      input = h('input', { type: 'checkbox', role: 'switch', id, 'aria-describedby': described });
      input.addEventListener('change', () => change(info.key, input.checked));
      row = h('div', { class: 'setting toggle' }, h('label', { for: id }, input, ' ', info.label), help, error);
    } else {
      if (info.kind === 'enum') {
        input = h('select', { id, 'aria-describedby': described },
          info.options.map((option) => h('option', { value: option }, option)));
        input.addEventListener('change', () => change(info.key, input.value));
      } else if (info.kind === 'int') {
        input = h('input', { type: 'number', id, min: info.min, max: info.max, step: 1, inputmode: 'numeric', 'aria-describedby': described });
        // A number the browser cannot read goes as typed: the bridge says what is wrong with it.
        input.addEventListener('change', () => change(info.key, Number.isFinite(input.valueAsNumber) ? input.valueAsNumber : input.value));
      } else {
        input = h('input', { type: 'color', id, 'aria-describedby': described });
        input.addEventListener('change', () => change(info.key, input.value.toUpperCase()));
      }
      row = h('div', { class: 'setting' }, h('label', { for: id }, info.label), input, help, error);
    }
    fields.set(info.key, { info, input, error });
    return row;
  }

  function show(settings) {
    confirmed = settings;
    for (const [key, { info, input }] of fields) {
      const value = settings[key];
      if (info.kind === 'bool') input.checked = value === true;
      else if (info.kind === 'colour') input.value = (value || '#000000').toLowerCase();
      else input.value = value === null || value === undefined ? '' : String(value);
    }
  }

  function showError(key, message) {
    const target = fields.get(key);
    if (!target) return;
    target.error.textContent = message;
    target.error.hidden = false;
  }

  function change(key, value) {
    const { info, input, error } = fields.get(key);
    error.hidden = true;
    input.disabled = true;
    status.textContent = `Saving ${info.label}…`;
    // One change at a time, in the order made: each answer is the state after it.
    queue = queue.then(async () => {
      try {
        const answer = await api(`${url}/settings`, { method: 'POST', json: { [key]: value } });
        if (gone) return;
        show(answer.settings);
        status.textContent = `Saved: ${info.label} (confirmed ${new Date().toLocaleTimeString()})`;
      } catch (err) {
        if (gone) return;
        showError(key, err.message);
        status.textContent = `Not saved: ${info.label}`;
        show(confirmed);
      } finally {
        input.disabled = false;
      }
    });
  }

  function rebootSection() {
    const error = h('p', { class: 'error field-error', id: 'err-reboot', role: 'alert', hidden: true });
    const ask = h('button', { type: 'button', class: 'danger', id: 'reboot' }, 'Reboot doorbell');
    const confirm = h('button', { type: 'button', class: 'danger', hidden: true }, 'Reboot now');
    const cancel = h('button', { type: 'button', hidden: true }, 'Cancel');
    const asking = (yes) => { ask.hidden = yes; confirm.hidden = !yes; cancel.hidden = !yes; };
    ask.addEventListener('click', () => { error.hidden = true; asking(true); confirm.focus(); });
    cancel.addEventListener('click', () => { asking(false); ask.focus(); });
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      status.textContent = 'Sending reboot…';
      try {
        const answer = await api(`${url}/reboot`, { method: 'POST' });
        status.textContent = answer.message;
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        status.textContent = 'Reboot not sent';
      } finally {
        confirm.disabled = false;
        asking(false);
      }
    });
    return h('section', { class: 'card setting-group' }, h('h2', {}, 'Reboot'),
      h('p', { class: 'muted' }, 'The doorbell restarts 10 to 60 seconds after the cloud sends the command; its live view stops meanwhile.'),
      h('div', { class: 'controls' }, ask, confirm, cancel), error);
  }

  api(`${url}/settings`).then((answer) => {
    if (gone) return;
    fill(heading, `${answer.device}: settings`);
    build(answer.controls);
    show(answer.settings);
    status.textContent = '';
  }).catch((err) => {
    if (gone) return;
    status.className = 'error';
    status.textContent = `Could not load the settings: ${err.message}`;
  });
  return () => { gone = true; };
}
