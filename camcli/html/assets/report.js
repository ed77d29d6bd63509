/* camcli report: draws the data camcli.html embedded in index.html and data/*.js.
 *
 * Everything shown comes from users' files (paths, labels, error messages), so it is treated as
 * data only: the DOM is built with createElement/textContent/setAttribute, never from HTML strings,
 * and every src/href must be a relative, percent-encoded path (see safeUrl).
 * Record layouts: camcli/html/data.py (images) and camcli/html/compare.py (pairs).
 */
'use strict';
(() => {
  const CHUNK = 48; // cards added per step of the lazy list
  const [PATH, DIR, STATUS, ERROR, THUMB, PREDS, SHOTS, AUDIT, HITS, SIZE, PARTIAL, SEG] = Array.from({length: 12}, (_, i) => i);
  const [P_PATH, P_A, P_B, P_AJSON, P_BJSON, P_TOP_A, P_TOP_B, P_CHANGED, P_SPEARMAN, P_MASK, P_BOX] = Array.from({length: 11}, (_, i) => i);

  const $ = (id) => document.getElementById(id);
  const meta = JSON.parse($('camcli-meta').textContent);
  const images = [];
  const pairs = [];
  for (const [kind, text] of window.camcliParts || []) {
    const target = kind === 'compare' ? pairs : images;
    for (const record of JSON.parse(text)) target.push(record);
  }
  const lowerPaths = images.map((r) => r[PATH].toLowerCase());
  const lowerPairPaths = pairs.map((r) => r[P_PATH].toLowerCase());

  // ---- safe DOM building -------------------------------------------------------------------
  const URL_OK = /^(?![/])[A-Za-z0-9._~%/-]+$/; // what encode.url_path produces: no scheme, query or fragment

  function safeUrl(url) {
    return typeof url === 'string' && URL_OK.test(url) ? url : null;
  }

  /* el('a', {href: url, class: 'x', text: 'label'}, child...): attributes via setAttribute, text via
     textContent, children appended as nodes (strings become text nodes). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'src' || key === 'href') {
        const url = safeUrl(value);
        if (url) node.setAttribute(key, url);
      } else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
    return node;
  }

  function picture(url, alt, cls) {
    // loading/decoding first: setting src before them starts an eager, synchronous-looking load.
    const img = el('img', {loading: 'lazy', decoding: 'async', alt, class: cls, src: url});
    img.addEventListener('error', () => img.replaceWith(el('span', {class: cls + ' missing', text: 'file missing'})));
    return img;
  }

  // ---- formatting --------------------------------------------------------------------------
  const fmt = (v) => {
    if (v === null || v === undefined) return '–';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  };
  const raw = (v) => (v === null || v === undefined ? '–' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const pct = (p) => (typeof p === 'number' ? (p * 100).toFixed(1) + '%' : '–');
  const box = (b) => (Array.isArray(b) && b.length === 4 ? `${b[0]},${b[1]} – ${b[2]},${b[3]}` : 'none');
  const label = (index) => meta.labels[index] ?? '?';
  const method = (index) => meta.methods[index] ?? '?';

  function statusBadge(ok, text) {
    return el('span', {class: ok ? 'badge ok' : 'badge bad', text: (ok ? '✔ ' : '✘ ') + text});
  }

  function facts(dl, items) {
    dl.replaceChildren();
    for (const [name, value] of items) {
      if (value === undefined) continue;
      dl.append(el('div', null, el('dt', {text: name}), el('dd', null, value instanceof Node ? value : fmt(value))));
    }
  }

  // ---- run header, evaluation, legend ------------------------------------------------------
  function renderRun() {
    const run = meta.run || {};
    const model = run.model || {};
    const options = run.options || {};
    const counts = run.counts || {};
    const found = meta.found;
    const status = run.status || 'unknown';
    facts($('run-facts'), [
      ['Status', statusBadge(status === 'complete', status)],
      ['Model', model.name], ['Weights', model.weights], ['Layer', model.target_layer],
      ['Methods', (options.methods || []).join(', ')], ['Top-k', options.top_k],
      ['Classes', (options.classes || []).join(', ') || undefined], ['Colormap', options.colormap],
      ['Device', run.device], ['Precision', options.precision],
      ['Started', run.started], ['Finished', run.finished], ['Seconds', run.seconds],
      ['Counts (run.json)', meta.run ? `ok ${fmt(counts.ok)} · failed ${fmt(counts.failed)} · skipped ${fmt(counts.skipped)} · total ${fmt(counts.total)}` : undefined],
      ['Found in folder', `${found.images} images: ${found.ok} ok, ${found.error} failed`],
      ['camcli', run.camcli], ['torch', run.torch], ['timm', run.timm],
    ]);
    const body = $('options-body');
    for (const [key, value] of Object.entries(options)) body.append(el('tr', null, el('th', {scope: 'row', text: key}), el('td', {text: raw(value)})));
    $('run-options').hidden = !Object.keys(options).length;
    $('subtitle').textContent = `${model.name || 'unknown model'} · ${found.images} images · generated ${meta.generated} by camcli ${meta.camcli}`;
    document.title = `camcli report · ${model.name || ''} · ${found.images} images`;
    renderNotice(status, found);
  }

  function renderNotice(status, found) {
    const lines = [];
    if (!meta.run) lines.push('run.json was not found: the run may not have started properly. Showing what the folder holds.');
    else if (status === 'running') lines.push(`This run is still running, or was killed: the report shows the ${found.images} images finished when it was made.`);
    else if (status === 'interrupted') lines.push(`This run was interrupted: the report shows the ${found.images} images it finished.`);
    if (found.partial) lines.push(`${found.partial} images are known from summary.jsonl only (their explanation.json is missing).`);
    if (found.unreadable) lines.push(`${found.unreadable} explanation.json files could not be read and are left out.`);
    const notice = $('notice');
    notice.hidden = !lines.length;
    for (const line of lines) notice.append(el('p', {text: '⚠ ' + line}));
  }

  function renderEvaluation() {
    const ev = meta.evaluation;
    if (!ev) return;
    $('evaluation').hidden = false;
    const gates = ev.gates || [];
    const failed = gates.filter((g) => g.passed !== true).length;
    const verdict = $('verdict');
    verdict.append(ev.passed === true ? statusBadge(true, 'PASSED') : ev.passed === false ? statusBadge(false, 'FAILED') : el('span', {text: 'no overall verdict'}));
    verdict.append(` ${gates.length - failed} of ${gates.length} gates pass · ${fmt(ev.images)} images evaluated`);
    facts($('classification'), Object.entries(ev.classification || {}).map(([k, v]) => [`classification ${k}`, v]));
    const body = $('gates').tBodies[0];
    for (const g of gates) {
      body.append(el('tr', {class: g.passed === true ? 'pass' : 'fail', 'data-passed': String(g.passed === true)},
        el('td', null, statusBadge(g.passed === true, g.passed === true ? 'pass' : 'fail')),
        el('td', {text: fmt(g.name)}), el('td', {text: fmt(g.method)}), el('td', {text: fmt(g.metric)}),
        el('td', {text: fmt(g.value)}), el('td', {text: fmt(g.threshold)})));
    }
    const table = $('method-metrics');
    table.tHead.append(el('tr', null, ...['method', ...ev.columns].map((c) => el('th', {scope: 'col', text: c}))));
    for (const [name, ...values] of ev.rows) {
      table.tBodies[0].append(el('tr', null, el('th', {scope: 'row', text: name}), ...values.map((v) => el('td', {text: fmt(v)}))));
    }
  }

  function renderLegend() {
    const stops = (meta.legend.stops || []).filter((s) => /^#[0-9a-f]{6}$/.test(s));
    $('legend-bar').style.backgroundImage = `linear-gradient(to right, ${stops.join(', ')})`;
    $('legend-name').textContent = meta.legend.name;
  }

  // ---- filters ------------------------------------------------------------------------------
  const controls = {search: $('search'), status: $('f-status'), cls: $('f-class'), method: $('f-method'), audit: $('f-audit'), sort: $('sort')};

  function fillControls() {
    const counts = new Map();
    for (const r of images) {
      const top = r[PREDS][0];
      if (top) counts.set(top[1], (counts.get(top[1]) || 0) + 1);
    }
    const classes = [...counts].sort((a, b) => b[1] - a[1] || label(a[0]).localeCompare(label(b[0])));
    for (const [index, n] of classes) controls.cls.append(el('option', {value: index, text: `${label(index)} (${n})`}));
    meta.methods.forEach((name, index) => controls.method.append(el('option', {value: index, text: name})));
    $('f-audit-label').hidden = !meta.hasAudit;
    meta.metricKeys.forEach(([m, key], index) => controls.sort.append(el('option', {value: 'm' + index, text: `${m} ${key}, worst first`})));
    for (const control of Object.values(controls)) control.addEventListener(control === controls.search ? 'input' : 'change', apply);
  }

  function auditOutcome(r, methodName) {
    const hits = r[HITS];
    if (!hits) return 'none';
    const values = methodName === null ? Object.values(hits) : methodName in hits ? [hits[methodName]] : [];
    if (!values.length) return 'none';
    return values.includes(0) ? 'miss' : 'hit';
  }

  function passes(i, f) {
    const r = images[i];
    if (f.query && !lowerPaths[i].includes(f.query)) return false;
    if (f.status && r[STATUS] !== f.status) return false;
    if (f.cls !== null && (!r[PREDS][0] || r[PREDS][0][1] !== f.cls)) return false;
    if (f.method !== null && !r[SHOTS].some((s) => s[0] === f.method)) return false;
    return !f.audit || auditOutcome(r, f.method === null ? null : method(f.method)) === f.audit;
  }

  function sortKey(sort) {
    if (sort === 'conf-desc' || sort === 'conf-asc') {
      const sign = sort === 'conf-desc' ? -1 : 1;
      return (i) => { const top = images[i][PREDS][0]; return top && typeof top[2] === 'number' ? sign * top[2] : null; };
    }
    if (sort.startsWith('m')) {
      const [m, key, lowerIsBetter] = meta.metricKeys[Number(sort.slice(1))];
      return (i) => {
        const v = ((images[i][AUDIT] || {})[m] || {})[key];
        return typeof v === 'number' || typeof v === 'boolean' ? (lowerIsBetter ? -Number(v) : Number(v)) : null;
      };
    }
    return null;
  }

  function currentFilter() {
    const number = (select) => (select.value === '' ? null : Number(select.value));
    return {query: controls.search.value.trim().toLowerCase(), status: controls.status.value, cls: number(controls.cls),
      method: number(controls.method), audit: controls.audit.value};
  }

  function apply() {
    const f = currentFilter();
    const order = [];
    for (let i = 0; i < images.length; i++) if (passes(i, f)) order.push(i);
    const key = sortKey(controls.sort.value);
    if (key) {
      const keys = new Map(order.map((i) => [i, key(i)]));
      order.sort((a, b) => {
        const ka = keys.get(a), kb = keys.get(b);
        if (ka === null || kb === null) return (ka === null) - (kb === null) || a - b;
        return ka - kb || a - b;
      });
    }
    cards.reset(order);
    $('count').textContent = images.length ? `Showing ${order.length} of ${images.length} images` : 'No finished images in this folder yet.';
    const pairOrder = [];
    for (let i = 0; i < pairs.length; i++) if (!f.query || lowerPairPaths[i].includes(f.query)) pairOrder.push(i);
    pairList.reset(pairOrder);
    $('compare-count').textContent = `Showing ${pairOrder.length} of ${pairs.length} pairs, least similar first`;
  }

  // ---- lazy lists: render CHUNK items, more when the "Show more" row comes near the viewport --
  class LazyList {
    constructor(container, button, render) {
      Object.assign(this, {container, button, render, order: [], shown: 0, sentinel: button.parentElement});
      this.observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) this.more(); }, {rootMargin: '800px'});
      button.addEventListener('click', () => this.more());
    }

    reset(order) {
      this.order = order;
      this.shown = 0;
      this.container.replaceChildren();
      this.more();
    }

    more() {
      const end = Math.min(this.order.length, this.shown + CHUNK);
      const fragment = document.createDocumentFragment();
      for (let pos = this.shown; pos < end; pos++) fragment.append(this.render(this.order[pos], pos));
      this.container.append(fragment);
      this.shown = end;
      this.button.hidden = end >= this.order.length;
      // Observing again reports the current state, so a sentinel still in view loads the next chunk.
      this.observer.unobserve(this.sentinel);
      if (!this.button.hidden) this.observer.observe(this.sentinel);
    }

    item(pos) {
      while (this.shown <= pos && this.shown < this.order.length) this.more();
      return this.container.children[pos] || null;
    }
  }

  // ---- image cards --------------------------------------------------------------------------
  function thumbnail(r, cls) {
    return r[THUMB] ? picture(r[THUMB], 'source image', cls) : el('span', {class: cls + ' placeholder', text: 'no preview'});
  }

  function shotUrl(r, s) {
    return s[8] && r[DIR] ? r[DIR] + s[8] : null;
  }

  function card(i, pos) {
    const r = images[i];
    const ok = r[STATUS] === 'ok';
    const methodFilter = currentFilter().method;
    const shots = r[SHOTS].filter((s) => methodFilter === null || s[0] === methodFilter);
    return el('article', {class: ok ? 'card' : 'card failed', role: 'listitem', tabindex: 0, 'data-pos': pos,
      'data-camcli-image': r[PATH], 'data-status': ok ? 'ok' : 'error', 'aria-label': `${r[PATH]}, ${ok ? 'ok' : 'error'}`},
      el('div', {class: 'card-head'}, thumbnail(r, 'thumb'),
        el('div', {class: 'card-title'}, el('h3', {class: 'path', title: r[PATH], text: r[PATH]}),
          el('p', null, statusBadge(ok, ok ? 'ok' : 'error'), ' ', auditBadge(r, methodFilter)),
          predictionList(r))),
      r[ERROR] ? el('p', {class: 'error-text', text: r[ERROR]}) : null,
      r[PARTIAL] ? el('p', {class: 'muted', text: 'explanation.json missing: from summary.jsonl'}) : null,
      shots.length ? el('div', {class: 'shots'}, ...shots.map((s) => shotFigure(r, s, 'shot'))) : null,
      el('button', {type: 'button', class: 'open', text: 'Details'}));
  }

  function predictionList(r) {
    return el('ol', {class: 'preds', 'aria-label': 'top predictions'},
      ...r[PREDS].slice(0, 3).map((p) => el('li', null, el('span', {text: label(p[1])}), ' ', el('b', {text: pct(p[2])}))));
  }

  function auditBadge(r, methodFilter) {
    const outcome = auditOutcome(r, methodFilter === null ? null : method(methodFilter));
    if (outcome === 'none') return null;
    return el('span', {class: outcome === 'hit' ? 'badge ok' : 'badge bad', text: outcome === 'hit' ? '◎ audit: hit' : '⊘ audit: miss'});
  }

  function shotFigure(r, s, cls) {
    const name = `${method(s[0])} · ${label(s[2])}`;
    const url = shotUrl(r, s);
    return el('figure', {class: cls},
      url ? picture(url, name, cls + '-img') : el('span', {class: cls + '-img placeholder', text: 'no picture saved'}),
      el('figcaption', null, el('span', {text: name}), s[6] ? el('span', {class: 'muted', text: `box ${box(s[6])}`}) : null));
  }

  // ---- detail view --------------------------------------------------------------------------
  const dialog = $('detail');
  let detailPos = -1;

  function openDetail(pos) {
    const item = cards.item(pos);
    if (!item) return;
    detailPos = pos;
    const r = images[cards.order[pos]];
    $('detail-title').textContent = r[PATH];
    $('detail-body').replaceChildren(...detailContent(r));
    $('detail-prev').disabled = pos <= 0;
    $('detail-next').disabled = pos >= cards.order.length - 1;
    if (!dialog.open) dialog.showModal();
    dialog.scrollTop = 0;
  }

  function detailContent(r) {
    const ok = r[STATUS] === 'ok';
    const size = r[SIZE] ? `${r[SIZE][0]}×${r[SIZE][1]} px` : null;
    const json = r[DIR] && !r[PARTIAL] ? el('a', {href: r[DIR] + 'explanation.json', class: 'json-link', target: '_blank', rel: 'noopener', text: 'explanation.json'}) : null;
    const parts = [el('div', {class: 'detail-meta'}, thumbnail(r, 'thumb'),
      el('p', null, statusBadge(ok, ok ? 'ok' : 'error'), ' ', size, size && json ? ' · ' : '', json))];
    if (r[ERROR]) parts.push(el('p', {class: 'error-text', text: r[ERROR]}));
    if (r[PREDS].length) parts.push(el('h3', {text: 'Predictions'}), table(['rank', 'class', 'label', 'probability', 'logit'],
      r[PREDS].map((p, n) => [n + 1, p[0], label(p[1]), raw(p[2]), raw(p[3])])));
    if (r[SEG]) {  // a segmentation model: its predicted classes, as a picture and by area
      const [mask, areas] = r[SEG];
      const url = mask && r[DIR] ? r[DIR] + mask : null;
      parts.push(el('h3', {text: 'Predicted classes (segmentation)'}),
        el('div', {class: 'detail-shots'}, el('figure', {class: 'big'},
          url ? picture(url, 'predicted classes', 'big-img segmentation') : el('span', {class: 'big-img placeholder', text: 'no mask saved'}),
          el('figcaption', null, el('span', {text: 'each pixel in its class colour'})))),
        table(['class', 'label', 'share'], areas.map((a) => [a[0], label(a[1]), pct(a[2])])));
    }
    if (r[AUDIT]) {
      const rows = Object.entries(r[AUDIT]).flatMap(([m, values]) => Object.entries(values).map(([k, v]) => [m, k, raw(v)]));
      parts.push(el('h3', {text: 'Evaluation'}), table(['method', 'metric', 'value'], rows));
    }
    for (const group of shotsByClass(r[SHOTS])) {
      const s = group[0];
      const heading = s[1] === null ? `${method(s[0])} concepts (not per class)` : `${label(s[2])} · class ${raw(s[1])} · rank ${raw(s[3])} · ${pct(s[5])}`;
      parts.push(el('h3', {text: heading}),
        el('div', {class: 'detail-shots'}, ...group.map((shot) => detailFigure(r, shot))));
    }
    return parts;
  }

  function shotsByClass(shots) {
    const groups = new Map();
    for (const s of shots) {
      const key = s[1] === null ? `concepts|${s[0]}` : `${s[1]}|${s[3]}`;  // a class-free method's concepts: one group
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(s);
    }
    return [...groups.values()];
  }

  function detailFigure(r, s) {
    const figure = shotFigure(r, s, 'big');
    const numbers = el('dl', {class: 'numbers'});
    facts(numbers, [['method', method(s[0])], ['class', raw(s[1])], ['rank', raw(s[3])], ['logit', raw(s[4])],
      ['probability', raw(s[5])], ['bbox', raw(s[6])], ['peak', raw(s[7])]]);
    figure.append(numbers);
    return figure;
  }

  function table(head, rows) {
    return el('div', {class: 'scroll'}, el('table', {class: 'grid-table'},
      el('thead', null, el('tr', null, ...head.map((h) => el('th', {scope: 'col', text: h})))),
      el('tbody', null, ...rows.map((row) => el('tr', null, ...row.map((v) => el('td', {text: fmt(v)})))))));
  }

  // ---- compare pairs ------------------------------------------------------------------------
  function pairCard(i) {
    const p = pairs[i];
    const side = (name, url, top, json) => el('figure', {class: 'side'},
      url ? picture(url, `run ${name}`, 'big-img') : el('span', {class: 'big-img placeholder', text: 'no picture'}),
      el('figcaption', null, el('b', {text: `run ${name}: `}), top ? `${top[0]} ${pct(top[1])}` : '–', ' ',
        json ? el('a', {href: json, target: '_blank', rel: 'noopener', text: 'explanation.json'}) : null));
    return el('article', {class: 'pair', role: 'listitem', 'data-camcli-image': p[P_PATH], 'data-changed': String(p[P_CHANGED])},
      el('h3', {class: 'path', title: p[P_PATH], text: p[P_PATH]}),
      el('p', null, p[P_CHANGED] ? el('span', {class: 'badge bad', text: '⚠ top-1 changed'}) : el('span', {class: 'badge ok', text: '= same top-1'})),
      el('div', {class: 'sides'}, side('A', p[P_A], p[P_TOP_A], p[P_AJSON]), side('B', p[P_B], p[P_TOP_B], p[P_BJSON])),
      el('dl', {class: 'facts numbers'}, ...[['Spearman', p[P_SPEARMAN]], ['mask IoU', p[P_MASK]], ['box IoU', p[P_BOX]]]
        .map(([k, v]) => el('div', null, el('dt', {text: k}), el('dd', {text: fmt(v)})))));
  }

  function renderCompareHeader() {
    const c = meta.compare;
    if (!c) return;
    $('tabs').hidden = false;
    facts($('compare-facts'), [['Run A', c.run_a], ['Run B', c.run_b], ['Compare file', c.file],
      ['Only in A', c.only_in_a.count], ['Only in B', c.only_in_b.count], ...Object.entries(c.summary)]);
    for (const [name, list] of [['A', c.only_in_a], ['B', c.only_in_b]]) {
      const more = list.count - list.names.length;
      $('only-lists').append(el('h3', {text: `Only in run ${name} (${list.count})`}),
        el('ul', null, ...list.names.map((n) => el('li', {text: n}))), more > 0 ? el('p', {text: `… and ${more} more`}) : null);
    }
  }

  function showTab(which) {
    $('images').hidden = which !== 'images';
    $('compare').hidden = which !== 'compare';
    $('tab-images').setAttribute('aria-pressed', String(which === 'images'));
    $('tab-compare').setAttribute('aria-pressed', String(which === 'compare'));
    (which === 'images' ? cards : pairList).more();
  }

  // ---- keyboard -----------------------------------------------------------------------------
  function columns() {
    const children = $('cards').children;
    let n = 0;
    while (n < children.length && children[n].offsetTop === children[0].offsetTop) n++;
    return Math.max(1, n);
  }

  function focusCard(pos) {
    const target = Math.max(0, Math.min(cards.order.length - 1, pos));
    const item = cards.item(target);
    if (item) {
      item.focus();
      item.scrollIntoView({block: 'nearest'});
    }
  }

  function onKey(ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || $('images').hidden) return;
    const t = ev.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
    if (typing) return;
    if (dialog.open) {
      if (ev.key === 'j' || ev.key === 'ArrowRight') openDetail(Math.min(detailPos + 1, cards.order.length - 1));
      else if (ev.key === 'k' || ev.key === 'ArrowLeft') openDetail(Math.max(detailPos - 1, 0));
      return;
    }
    const current = t.closest ? t.closest('.card') : null;
    const pos = current ? Number(current.dataset.pos) : -1;
    const step = ev.key === 'ArrowDown' ? columns() : ev.key === 'ArrowUp' ? -columns() : {j: 1, k: -1, ArrowRight: 1, ArrowLeft: -1}[ev.key];
    if (ev.key === '/') {
      controls.search.focus();
    } else if (step !== undefined && (current || ev.key === 'j' || ev.key === 'k')) {
      focusCard(current ? pos + step : 0);
    } else if (ev.key === 'Enter' && current && t === current) {
      openDetail(pos);
    } else {
      return;
    }
    ev.preventDefault();
  }

  function onCardClick(ev) {
    const current = ev.target.closest('.card');
    if (current && !ev.target.closest('a')) openDetail(Number(current.dataset.pos));
  }

  // ---- start --------------------------------------------------------------------------------
  const cards = new LazyList($('cards'), $('more-cards'), card);
  const pairList = new LazyList($('pairs'), $('more-pairs'), pairCard);
  renderRun();
  renderEvaluation();
  renderLegend();
  renderCompareHeader();
  fillControls();
  document.addEventListener('keydown', onKey);
  $('cards').addEventListener('click', onCardClick);
  $('detail-close').addEventListener('click', () => dialog.close());
  $('detail-prev').addEventListener('click', () => openDetail(detailPos - 1));
  $('detail-next').addEventListener('click', () => openDetail(detailPos + 1));
  dialog.addEventListener('close', () => { const item = cards.item(detailPos); if (item) item.focus(); });
  $('tab-images').addEventListener('click', () => showTab('images'));
  $('tab-compare').addEventListener('click', () => showTab('compare'));
  apply();
  window.camcliReady = true;
  window.camcliReadyAt = performance.now();
})();
