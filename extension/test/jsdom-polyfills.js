// jsdom has no DragEvent, which @lumino/dragdrop subclasses when it loads (JupyterLab's testutils do the same)
if (typeof window !== 'undefined' && typeof window.DragEvent === 'undefined') {
  window.DragEvent = class DragEvent extends window.MouseEvent {};
  globalThis.DragEvent = window.DragEvent;
}
