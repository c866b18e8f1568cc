// The todo front end: plain JavaScript, no build step.
//
// The server is the source of truth: every change goes through the JSON
// API, and the list is re-read with GET /api/todos after each change and
// whenever the live connection (a WebSocket on /ws) says that something
// changed, whichever browser or worker process changed it.
'use strict';

(() => {
  const MAX_TEXT = 500;

  const $ = (sel) => document.querySelector(sel);
  const listEl = $('#list');
  const emptyEl = $('#empty');
  const countEl = $('#count');
  const errorEl = $('#error');
  const liveEl = $('#live');
  const form = $('#new-form');
  const input = $('#new-todo');

  /** @type {{todos: {id: number, text: string, done: boolean}[], filter: string, editing: number|null}} */
  const state = { todos: [], filter: 'all', editing: null };
  /** The rendered <li> of each todo, by id. */
  const items = new Map();

  // ---------------------------------------------------------------- API

  async function request(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new Error('The server cannot be reached.');
    }
    if (res.status === 204) return null;
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      // Not JSON: the status says enough.
    }
    if (!res.ok) {
      const err = new Error((data && data.error) || `${res.status} ${res.statusText}`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // Re-reads the list. Calls made while a read is running are folded into
  // one more read after it, so the last answer always reflects the latest
  // change.
  let reading = null;
  let readAgain = false;
  function refresh() {
    if (reading) {
      readAgain = true;
      return reading;
    }
    reading = (async () => {
      do {
        readAgain = false;
        try {
          state.todos = await request('GET', '/api/todos');
          render();
          document.documentElement.dataset.loaded = 'true';
        } catch (e) {
          showError(`Could not load the list: ${e.message}`);
        }
      } while (readAgain);
      reading = null;
    })();
    return reading;
  }

  async function mutate(method, path, body) {
    try {
      return await request(method, path, body);
    } catch (e) {
      showError(e.message);
      return undefined;
    } finally {
      refresh();
    }
  }

  // ------------------------------------------------------------ actions

  async function addTodo(text) {
    const todo = await mutate('POST', '/api/todos', { text });
    if (todo) {
      upsert(todo);
      render();
    }
    return Boolean(todo);
  }

  async function setDone(id, done) {
    const todo = await mutate('PATCH', `/api/todos/${id}`, { done });
    if (todo) upsert(todo);
    render();
  }

  async function setText(id, text) {
    const todo = await mutate('PATCH', `/api/todos/${id}`, { text });
    if (todo) upsert(todo);
    render();
  }

  async function removeTodo(id) {
    const li = items.get(id);
    if (li) li.classList.add('leaving');
    const ok = (await mutate('DELETE', `/api/todos/${id}`)) !== undefined;
    if (ok) state.todos = state.todos.filter((t) => t.id !== id);
    else if (li) li.classList.remove('leaving');
    render();
  }

  function upsert(todo) {
    const i = state.todos.findIndex((t) => t.id === todo.id);
    if (i >= 0) state.todos[i] = todo;
    else state.todos.push(todo);
  }

  // ------------------------------------------------------------ editing

  function startEdit(id) {
    const li = items.get(id);
    const todo = state.todos.find((t) => t.id === id);
    if (!li || !todo || state.editing === id) return;
    if (state.editing !== null) finishEdit(true);
    state.editing = id;
    li.classList.add('editing');
    const field = document.createElement('input');
    field.className = 'edit-input';
    field.type = 'text';
    field.maxLength = MAX_TEXT;
    field.value = todo.text;
    field.setAttribute('aria-label', `Edit “${todo.text}”`);
    field.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') finishEdit(true);
      else if (e.key === 'Escape') finishEdit(false);
    });
    field.addEventListener('blur', () => finishEdit(true));
    li.querySelector('.todo-text').after(field);
    field.focus();
    field.select();
  }

  function finishEdit(save) {
    const id = state.editing;
    if (id === null) return;
    state.editing = null;
    const li = items.get(id);
    const field = li && li.querySelector('.edit-input');
    const text = field ? field.value.trim() : '';
    if (li) li.classList.remove('editing');
    if (field) field.remove();
    const todo = state.todos.find((t) => t.id === id);
    if (save && todo && text && text !== todo.text) setText(id, text);
    else render();
  }

  // ---------------------------------------------------------- rendering

  const ICON_EDIT =
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 20h4L18.5 9.5a2.1 2.1 0 0 0-3-3L5 17v3z"/><path d="M13.5 6.5l3 3"/></svg>';
  const ICON_DELETE =
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';

  function createItem(todo) {
    const li = document.createElement('li');
    li.className = 'todo-item';
    li.dataset.id = String(todo.id);
    li.innerHTML =
      '<label class="check"><input type="checkbox" class="toggle"><span class="box" aria-hidden="true"></span></label>' +
      '<span class="todo-text"></span>' +
      `<button type="button" class="icon edit" title="Edit">${ICON_EDIT}</button>` +
      `<button type="button" class="icon delete" title="Delete">${ICON_DELETE}</button>`;
    li.querySelector('.toggle').addEventListener('change', (e) => setDone(todo.id, e.target.checked));
    li.querySelector('.todo-text').addEventListener('dblclick', () => startEdit(todo.id));
    li.querySelector('.edit').addEventListener('click', () => startEdit(todo.id));
    li.querySelector('.delete').addEventListener('click', () => removeTodo(todo.id));
    return li;
  }

  function updateItem(li, todo) {
    li.classList.toggle('done', todo.done);
    const toggle = li.querySelector('.toggle');
    toggle.checked = todo.done;
    toggle.setAttribute('aria-label', `${todo.done ? 'Mark not done' : 'Mark done'}: ${todo.text}`);
    const text = li.querySelector('.todo-text');
    if (text.textContent !== todo.text) text.textContent = todo.text;
    li.querySelector('.edit').setAttribute('aria-label', `Edit: ${todo.text}`);
    li.querySelector('.delete').setAttribute('aria-label', `Delete: ${todo.text}`);
  }

  function visible(todo) {
    if (state.filter === 'active') return !todo.done;
    if (state.filter === 'done') return todo.done;
    return true;
  }

  // Updates the list in place, keyed by id, so that an item being edited
  // keeps its input (and focus) when the list is re-read underneath it.
  function render() {
    const shown = state.todos.filter(visible);
    const ids = new Set(state.todos.map((t) => t.id));
    if (state.editing !== null && !ids.has(state.editing)) state.editing = null;

    let cursor = listEl.firstElementChild;
    for (const todo of shown) {
      let li = items.get(todo.id);
      if (!li) {
        li = createItem(todo);
        items.set(todo.id, li);
      }
      updateItem(li, todo);
      if (li === cursor) cursor = cursor.nextElementSibling;
      else listEl.insertBefore(li, cursor);
    }
    while (cursor) {
      const next = cursor.nextElementSibling;
      cursor.remove();
      cursor = next;
    }
    for (const id of items.keys()) if (!ids.has(id)) items.delete(id);

    const left = state.todos.filter((t) => !t.done).length;
    countEl.textContent = `${left} ${left === 1 ? 'item' : 'items'} left`;
    const total = state.todos.length;
    emptyEl.hidden = shown.length > 0;
    emptyEl.textContent =
      total === 0 ? 'Nothing to do yet. Add something above.'
        : state.filter === 'active' ? 'All done. Nice!'
          : 'Nothing done yet.';
    document.querySelectorAll('.filters a').forEach((a) => {
      const on = a.dataset.filter === state.filter;
      a.classList.toggle('selected', on);
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
  }

  let errorTimer = 0;
  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { errorEl.hidden = true; }, 5000);
  }

  // ------------------------------------------------------ live updates

  // A WebSocket on /ws; any message means "the list changed": re-read it.
  // Lost connections are retried with exponential backoff (1 s doubling
  // to 15 s, with jitter), at once when the browser comes back online or
  // the tab becomes visible.
  const live = { socket: null, attempt: 0, timer: 0 };

  function setLive(stateName, text, title) {
    liveEl.dataset.state = stateName;
    liveEl.querySelector('.live-text').textContent = text;
    liveEl.title = title;
  }

  function connect() {
    clearTimeout(live.timer);
    live.timer = 0;
    if (live.socket) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/ws`);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    live.socket = socket;
    if (live.attempt === 0) setLive('connecting', 'Connecting…', 'Live updates: connecting');
    socket.addEventListener('open', () => {
      live.attempt = 0;
      setLive('live', 'Live', 'Live updates: connected; changes from other browsers appear here at once');
      refresh(); // Catch up on what changed while disconnected.
    });
    socket.addEventListener('message', () => refresh());
    socket.addEventListener('close', () => {
      live.socket = null;
      scheduleReconnect();
    });
    // An error is always followed by a close.
  }

  function scheduleReconnect() {
    if (live.timer) return;
    if (!navigator.onLine) {
      setLive('offline', 'Offline', 'Live updates: offline; reconnecting when the network is back');
      return;
    }
    const base = Math.min(15000, 1000 * 2 ** live.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    live.attempt += 1;
    setLive('reconnecting', 'Reconnecting…',
      `Live updates: disconnected; next try in ${Math.round(delay / 1000)} s`);
    live.timer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (live.socket) return;
    live.attempt = 0;
    connect();
  }

  window.addEventListener('online', reconnectNow);
  window.addEventListener('offline', () => {
    if (!live.socket) setLive('offline', 'Offline', 'Live updates: offline');
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      refresh();
      reconnectNow();
    }
  });

  // ------------------------------------------------------------- wiring

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) {
      input.focus();
      return;
    }
    input.disabled = true;
    const ok = await addTodo(text);
    input.disabled = false;
    if (ok) input.value = '';
    input.focus();
  });

  function readFilter() {
    const f = location.hash.replace(/^#\/?/, '');
    state.filter = f === 'active' || f === 'done' ? f : 'all';
    render();
  }
  window.addEventListener('hashchange', readFilter);

  readFilter();
  refresh();
  connect();
})();
