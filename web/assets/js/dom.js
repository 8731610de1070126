// Elements built from data, never from HTML strings: nothing a server or user sends can become
// markup or script.

/**
 * h('button', {type: 'button', onclick: f}, 'Save') → <button>. Props starting with "on" are
 * listeners; `class`, `for`, aria-* and data-* become attributes; true/false toggle boolean
 * attributes; null and undefined are skipped, and so are null children.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value' || name === 'checked') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

let counter = 0;
/** A page-unique id for label/aria wiring. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled control: a <div> holding <label for> and the control (plus an optional hint). */
export function field(label, control, hint) {
  control.id ||= uid('field');
  let described = null;
  if (hint) {
    described = h('p', { class: 'hint', id: uid('hint') }, hint);
    control.setAttribute('aria-describedby', described.id);
  }
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, described);
}

/** A region that announces an API error next to what caused it; empty until `show`. */
export function alertBox() {
  const box = h('p', { class: 'alert', role: 'alert', hidden: true });
  return {
    element: box,
    show(message) {
      box.textContent = message;
      box.hidden = false;
    },
    clear() {
      box.textContent = '';
      box.hidden = true;
    },
  };
}

/** A polite live region for outcomes (saved, tested). */
export function statusBox(className = 'status') {
  const box = h('p', { class: className, role: 'status' });
  return {
    element: box,
    show(message) {
      box.textContent = message;
    },
    clear() {
      box.textContent = '';
    },
  };
}

/**
 * Lets a table collapse into one card per row on narrow screens (class `cards`, see app.css):
 * each cell is labelled with its column's name, and explicit roles keep it a table for
 * assistive technology once CSS has changed how it is displayed. Call after rows change.
 */
export function cardTable(table) {
  table.classList.add('cards');
  table.setAttribute('role', 'table');
  const names = [...table.querySelectorAll('thead th')].map((th) => th.textContent);
  for (const group of table.querySelectorAll('thead, tbody')) group.setAttribute('role', 'rowgroup');
  for (const row of table.querySelectorAll('tr')) {
    row.setAttribute('role', 'row');
    [...row.children].forEach((cell, index) => {
      if (cell.tagName === 'TH') {
        cell.setAttribute('role', 'columnheader');
      } else {
        cell.setAttribute('role', 'cell');
        if (!cell.hasAttribute('colspan') && names[index]) cell.dataset.label = names[index];
      }
    });
  }
  return table;
}

export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function timeElement(iso) {
  return h('time', { datetime: iso }, formatDate(iso));
}
