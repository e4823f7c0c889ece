"""The viewer's two pages: static HTML with a little script that reads the JSON API.

No template engine and no outside scripts or styles: the pages load nothing but the viewer's own API.
Recorded values reach the page through ``textContent`` only, never as markup.
"""

from __future__ import annotations

import json

from gymrec.replay.view.catalog import NUMBER_COLUMNS

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; } .muted { color: #777; } .err { color: #b00; } form label { margin-right: 1em; }
canvas { image-rendering: pixelated; border: 1px solid #ccc; } code { background: #f4f4f4; padding: 0 3px; }
li.current > a { font-weight: bold; }
"""

_COMMON_JS = """
const $ = (id) => document.getElementById(id);
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
async function api(path) {
  const answer = await fetch(path, {credentials: 'same-origin'});
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}
function fmt(v) { return typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : (v === null ? '' : v); }
"""

LIST_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gymrec episodes</title><style>{_STYLE}</style></head>
<body>
<h1>Episodes</h1>
<form id="filters"></form>
<p><span id="count" class="muted"></span> <button id="prev" type="button">previous</button>
<button id="next" type="button">next</button> <span id="error" class="err"></span></p>
<table id="episodes"><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table>
<script>
{_COMMON_JS}
const NUMBERS = {json.dumps(NUMBER_COLUMNS)};
let params = new URLSearchParams(location.search);
let built = false;
function buildFilters(data) {{
  const form = $('filters');
  for (const [name, values] of Object.entries(data.choices)) {{
    const select = el('select', null, {{name: name, id: 'filter-' + name}});
    select.append(el('option', 'any ' + name, {{value: ''}}));
    for (const v of values) select.append(el('option', v, {{value: v}}));
    select.value = params.get(name) || '';
    const label = el('label', name + ' '); label.append(select); form.append(label);
  }}
  for (const name of NUMBERS.filter((n) => data.columns.includes(n))) {{
    for (const side of ['min', 'max']) {{
      const input = el('input', null, {{name: side + '_' + name, id: 'filter-' + side + '_' + name, size: 6}});
      input.value = params.get(side + '_' + name) || '';
      const label = el('label', side + ' ' + name + ' '); label.append(input); form.append(label);
    }}
  }}
  form.append(el('button', 'filter', {{type: 'submit', id: 'apply'}}));
  form.addEventListener('submit', (e) => {{
    e.preventDefault();
    params = new URLSearchParams([...new FormData(form)].filter(([, v]) => v !== ''));
    load();
  }});
  built = true;
}}
function cell(row, name) {{
  if (name === 'episode_id') {{
    const td = el('td'); td.append(el('a', row.episode_id.slice(0, 8), {{href: '/episodes/' + row.episode_id}})); return td;
  }}
  if (name === 'parent_episode_id' && row[name]) return el('td', row[name].slice(0, 8));
  return el('td', fmt(row[name]));
}}
async function load() {{
  $('error').textContent = '';
  let data;
  try {{ data = await api('/api/episodes?' + params.toString()); }}
  catch (e) {{ $('error').textContent = e.message; return; }}
  if (!built) buildFilters(data);
  history.replaceState(null, '', '/episodes' + (params.toString() ? '?' + params : ''));
  const columns = ['index', ...data.columns, ...(data.episodes.some((r) => r.error) ? ['error'] : [])];
  $('head').replaceChildren(...columns.map((c) => el('th', c === 'index' ? '#' : c)));
  $('rows').replaceChildren(...data.episodes.map((row) => {{
    const tr = el('tr', null, {{'data-episode': row.episode_id}});
    tr.append(...columns.map((c) => cell(row, c)));
    return tr;
  }}));
  const last = Math.min(data.offset + data.limit, data.total);
  $('count').textContent = data.total ? `${{data.offset + 1}}-${{last}} of ${{data.total}}` : 'no episodes match';
  $('prev').disabled = data.offset === 0;
  $('next').disabled = last >= data.total;
  $('prev').onclick = () => {{ params.set('offset', Math.max(0, data.offset - data.limit)); load(); }};
  $('next').onclick = () => {{ params.set('offset', data.offset + data.limit); load(); }};
}}
load();
</script></body></html>
"""

EPISODE_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gymrec episode</title><style>{_STYLE}</style></head>
<body>
<p><a href="/episodes">all episodes</a></p>
<h1 id="title">Episode</h1>
<p id="summary" class="muted"></p><p id="error" class="err"></p>
<div><canvas id="screen"></canvas></div>
<p><button id="play" type="button">play</button>
<input id="step" type="range" min="0" value="0" style="width: 40em">
<select id="speed"><option value="0.25">0.25x</option><option value="1" selected>1x</option>
<option value="4">4x</option></select></p>
<p id="now"></p>
<h2>Replay verdict</h2>
<p><button id="verify" type="button">verify</button> <span id="verdict" class="muted">not verified yet</span></p>
<h2>Lineage</h2><div id="lineage"></div>
<details><summary>attributes</summary><pre id="attributes"></pre></details>
<script>
{_COMMON_JS}
const eid = decodeURIComponent(location.pathname.split('/').pop());
let data, steps, playing = false, shown = -1, wanted = 0;
const blocks = new Map();
function block(n) {{
  if (!blocks.has(n)) blocks.set(n, new Promise((resolve, reject) => {{
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('frame block ' + n + ' did not load'));
    img.src = `/api/episodes/${{eid}}/blocks/${{n}}.png`;
  }}));
  return blocks.get(n);
}}
function describe(t) {{
  if (t >= steps.length) return `step ${{t}} / ${{steps.length}}: final observation`;
  const a = steps.action[t];
  const meaning = steps.action_meanings && Number.isInteger(a) ? ` (${{steps.action_meanings[a]}})` : '';
  return `step ${{t}} / ${{steps.length}}: action ${{JSON.stringify(a)}}${{meaning}}, reward ${{steps.reward[t]}}, ` +
         `actor ${{steps.actor[t]}}` + (steps.terminated[t] ? ', terminated' : '') + (steps.truncated[t] ? ', truncated' : '');
}}
async function show(t) {{
  wanted = t;
  const f = steps.frame, img = await block(Math.floor(t / f.block_steps));
  if (wanted !== t) return;
  const ctx = $('screen').getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, f.width, f.height);
  ctx.drawImage(img, 0, (t % f.block_steps) * f.height, f.width, f.height, 0, 0, f.width, f.height);
  shown = t;
  $('screen').dataset.step = t;
  $('step').value = t;
  $('now').textContent = describe(t);
  const next = Math.floor(t / f.block_steps) + 1;
  if (next < f.blocks) block(next);  // fetched while this block plays
}}
function play() {{
  playing = !playing;
  $('play').textContent = playing ? 'pause' : 'play';
  if (!playing) return;
  if (shown >= steps.length) show(0);
  let last = performance.now(), owed = 0;
  const tick = async (now) => {{
    if (!playing) return;
    owed += (now - last) / 1000 * steps.fps * Number($('speed').value);
    last = now;
    if (owed >= 1 && shown === wanted) {{
      const t = Math.min(steps.length, shown + Math.floor(owed));
      owed -= Math.floor(owed);
      await show(t);
      if (t >= steps.length) {{ playing = false; $('play').textContent = 'play'; $('screen').dataset.ended = '1'; return; }}
    }}
    requestAnimationFrame(tick);
  }};
  requestAnimationFrame(tick);
}}
function tree(node) {{
  const li = el('li', null, node.episode_id === eid ? {{class: 'current'}} : {{}});
  li.append(el('a', node.episode_id.slice(0, 8), {{href: '/episodes/' + node.episode_id}}));
  const notes = [node.branch_step !== null ? `branch at step ${{node.branch_step}}` : null,
                 node.branched_at !== null ? `rewound at step ${{node.branched_at}}` : null,
                 node.takeover ? 'takeover' : null, `${{node.length}} steps`].filter(Boolean);
  li.append(el('span', ' ' + notes.join(', '), {{class: 'muted'}}));
  if (node.children.length) {{ const ul = el('ul'); ul.append(...node.children.map(tree)); li.append(ul); }}
  return li;
}}
function verdictText(v) {{
  return v.status + (v.first_divergence ? ': ' + v.first_divergence : '') + (v.error ? ': ' + v.error : '') +
         (v.seconds !== undefined ? ` (${{v.seconds}} s)` : '');
}}
async function verify() {{
  $('verify').disabled = true;
  $('verdict').textContent = 'replaying...';
  try {{ const v = await api(`/api/episodes/${{eid}}/verdict`); $('verdict').textContent = verdictText(v); $('verdict').dataset.status = v.status; }}
  catch (e) {{ $('verdict').textContent = e.message; }}
  $('verify').disabled = false;
}}
async function start() {{
  try {{ data = await api('/api/episodes/' + eid); }}
  catch (e) {{ $('error').textContent = e.message; return; }}
  steps = data.steps;
  const row = data.row;
  $('title').textContent = `${{row.env_id}} episode ${{eid.slice(0, 8)}}`;
  $('summary').textContent = [`player ${{row.player || '-'}}`, `collector ${{row.collector}}`, `${{steps.length}} steps`,
    `return ${{row.return}}`, `ended: ${{row.end_reason}}`, `pairing ${{row.pairing}}`,
    ...['study', 'participant', 'study_session'].filter((k) => row[k]).map((k) => `${{k}} ${{row[k]}}`)].join(' · ');
  $('screen').width = steps.frame.width; $('screen').height = steps.frame.height;
  $('screen').style.width = steps.frame.width * 3 + 'px';
  $('step').max = steps.length;
  $('step').addEventListener('input', () => show(Number($('step').value)));
  $('play').addEventListener('click', play);
  $('verify').addEventListener('click', verify);
  const root = el('ul'); root.append(tree(data.lineage.root)); $('lineage').replaceChildren(root);
  if (data.lineage.missing_parent) $('lineage').append(el('p', `parent ${{data.lineage.missing_parent}} is not in this source`, {{class: 'muted'}}));
  $('attributes').textContent = JSON.stringify(data.attributes, null, 1);
  if (data.verdict) {{ $('verdict').textContent = verdictText(data.verdict); $('verdict').dataset.status = data.verdict.status; }}
  await show(0);
  document.body.dataset.ready = '1';
}}
start();
</script></body></html>
"""
