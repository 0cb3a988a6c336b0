// The stella run console. It reads the run API of the server that served
// it and nothing else. Every text from a run goes in with textContent,
// never as markup; log lines arrive escaped by the server (display rule),
// other fields are escaped here the same way for controls.
'use strict';

(function () {
  // esc shows control, format and invisible characters as escapes, as
  // the CLI does, so that what is seen is what the text holds.
  const hidden = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;
  function esc(s) {
    return String(s === undefined || s === null ? '' : s).replace(hidden, function (c) {
      const n = c.charCodeAt(0);
      switch (c) {
        case '\t': return '\\t';
        case '\n': return '\\n';
        case '\r': return '\\r';
      }
      if (n < 0x20 || n === 0x7f) return '\\x' + n.toString(16).padStart(2, '0');
      return '\\u' + n.toString(16).padStart(4, '0');
    });
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setState(node, state) {
    node.textContent = esc(state);
    node.className = 'state state-' + String(state).replace(/[^a-z-]/g, '');
  }

  function status(text) {
    document.getElementById('status').textContent = text;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!r.ok) throw new Error(url + ': ' + r.status);
    return r.json();
  }

  // The run list.
  async function runsPage() {
    try {
      const list = await getJSON('/api/runs');
      const tb = document.querySelector('#runs tbody');
      tb.textContent = '';
      for (const x of list) {
        const tr = el('tr');
        const td = el('td');
        const a = el('a', null, esc(x.id));
        a.href = '/console/packs/runs/' + encodeURIComponent(x.id).replace(/%3A/g, ':');
        td.appendChild(a);
        tr.appendChild(td);
        tr.appendChild(el('td', null, esc(x.pack.name + ':' + x.pack.version)));
        const st = el('td');
        setState(st, x.state);
        tr.appendChild(st);
        tr.appendChild(el('td', null, esc(x.runnerState)));
        tr.appendChild(el('td', null, esc(x.updated)));
        tb.appendChild(tr);
      }
      status(list.length + ' runs');
    } catch (e) {
      status('error: ' + e.message);
    }
  }

  // One run.
  function runPage() {
    const id = decodeURIComponent(location.pathname.split('/').pop());
    const api = '/api/runs/' + encodeURIComponent(id);
    const terminal = { succeeded: true, failed: true, cancelled: true, expired: true };
    const steps = {}; // step id -> its state node
    let last = '';
    let refreshing = null;
    let again = false;

    document.getElementById('run-id').textContent = esc(id);

    function stepNode(sid) {
      if (steps[sid]) return steps[sid];
      const li = el('li');
      li.id = 'step-' + sid;
      li.appendChild(el('span', 'step-id', esc(sid)));
      li.appendChild(document.createTextNode(' '));
      const st = el('span', 'state');
      li.appendChild(st);
      document.getElementById('steps').appendChild(li);
      steps[sid] = st;
      return st;
    }

    function render(rec) {
      document.getElementById('run-pack').textContent = esc(rec.pack.name + ':' + rec.pack.version);
      setState(document.getElementById('run-state'), rec.state);
      document.getElementById('run-runner').textContent = esc(rec.runnerState);
      for (const sid of rec.stepOrder || []) {
        const sr = rec.steps[sid];
        setState(stepNode(sid), sr.gate ? (sr.gate.state || sr.state) : sr.state);
      }
      // The gate: the one the run waits at, else the last gate reached.
      let gid = rec.gate || '';
      if (!gid) {
        for (const sid of rec.stepOrder || []) if (rec.steps[sid].gate) gid = sid;
      }
      const sec = document.getElementById('gate-section');
      if (gid) {
        const g = rec.steps[gid].gate;
        sec.hidden = false;
        document.getElementById('gate-id').textContent = esc(gid);
        setState(document.getElementById('gate-state'), g.state);
        document.getElementById('gate-approvals').textContent = (g.approved || 0) + '/' + (g.required || 0);
        document.getElementById('gate-message').textContent = esc(g.message || '');
      } else {
        sec.hidden = true;
      }
      const ul = document.getElementById('next');
      ul.textContent = '';
      for (const c of rec.next || []) {
        const li = el('li');
        li.appendChild(el('code', 'cmd', esc(c)));
        ul.appendChild(li);
      }
    }

    // refresh reads the run's record again; calls while one is under way
    // make one more afterwards.
    async function refresh() {
      if (refreshing) {
        again = true;
        return refreshing;
      }
      refreshing = (async function () {
        do {
          again = false;
          try {
            render(await getJSON(api));
          } catch (e) {
            status('error: ' + e.message);
          }
        } while (again);
        refreshing = null;
      })();
      return refreshing;
    }

    const stepStates = {
      'pack.run.step.started': 'running',
      'pack.run.step.retrying': 'running',
      'pack.run.step.succeeded': 'succeeded',
      'pack.run.step.failed': 'failed',
      'pack.run.step.errored': 'errored',
      'pack.run.step.skipped': 'skipped',
      'pack.run.step.cancelled': 'cancelled',
      'pack.run.gate.waiting': 'waiting',
      'pack.run.gate.approved': 'approved',
      'pack.run.gate.rejected': 'rejected',
      'pack.run.gate.expired': 'expired',
      'pack.run.gate.passed': 'passed',
      'pack.run.gate.denied': 'denied'
    };

    function onEvent(ev) {
      last = ev.lastEventId || last;
      let e;
      try {
        e = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      if (e.stepId && stepStates[e.type]) setState(stepNode(e.stepId), stepStates[e.type]);
      refresh();
    }

    function onLog(ev) {
      last = ev.lastEventId || last;
      let l;
      try {
        l = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      const log = document.getElementById('log');
      const span = el('span', 'stream-' + String(l.stream).replace(/[^a-z]/g, ''));
      // The server sent msg escaped (?display=text); textContent keeps
      // any markup in it as text.
      span.textContent = (l.stepId ? '[' + esc(l.stepId) + '] ' : '') + l.msg + '\n';
      log.appendChild(span);
      log.scrollTop = log.scrollHeight;
    }

    function connect() {
      let url = api + '/logs?display=text';
      if (last) url += '&lastEventId=' + encodeURIComponent(last);
      const es = new EventSource(url);
      status('following');
      es.addEventListener('log', onLog);
      for (const t of ['step', 'gate', 'run']) es.addEventListener(t, onEvent);
      es.addEventListener('end', function (ev) {
        last = ev.lastEventId || last;
        es.close();
        let d = {};
        try {
          d = JSON.parse(ev.data);
        } catch (err) { /* keep going */ }
        refresh();
        if (terminal[d.state]) {
          status('run ended: ' + esc(d.state));
          return;
        }
        // Parked at a gate or paused: no runner now; watch for a resume.
        status('no runner: ' + esc(d.state) + ' (watching for a resume)');
        setTimeout(connect, 1000);
      });
      es.addEventListener('error', function (ev) {
        if (ev.data) status('error: ' + ev.data);
      });
    }

    refresh().then(connect);
  }

  if (document.body.dataset.page === 'runs') {
    runsPage();
    setInterval(runsPage, 3000); // the list is read again every 3 s
  }
  if (document.body.dataset.page === 'run') runPage();
})();
