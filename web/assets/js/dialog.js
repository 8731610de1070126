// Modal dialogs on the native <dialog>: showModal() makes the rest of the page inert and gives
// Escape; we add what it leaves to us: Tab wraps inside, focus goes back to the opener, and
// the dialog leaves the DOM when it closes (with whatever was typed into it).

import { h, uid } from './dom.js';

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/**
 * openDialog({title, content, role}) → {dialog, close}. `content` is a node (a form, a
 * paragraph); `onClose` runs once, however the dialog closes.
 */
export function openDialog({ title, content, role = 'dialog', describedBy = null, onClose = () => {} }) {
  const opener = document.activeElement;
  const titleId = uid('dialog-title');
  const dialog = h(
    'dialog',
    { class: 'modal', 'aria-labelledby': titleId, 'aria-describedby': describedBy, role: role === 'dialog' ? null : role, 'aria-modal': 'true' },
    h('h2', { id: titleId }, title),
    content,
  );
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => !el.hidden && el.offsetParent !== null);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  let closed = false;
  dialog.addEventListener('close', () => {
    if (closed) return;
    closed = true;
    // Clear every field before the dialog leaves: a key typed here must not linger.
    for (const input of dialog.querySelectorAll('input, textarea')) input.value = '';
    dialog.remove();
    onClose();
    // The opener may have been re-rendered meanwhile (a saved list); then the page itself.
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    else document.getElementById('main')?.focus({ preventScroll: true });
  });
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector('[autofocus]') || dialog.querySelector(FOCUSABLE);
  if (first) first.focus();
  return { dialog, close: () => dialog.close() };
}
