// Run before Gradio mounts the page (`launch(head=...)`). A page framed by another site may be
// denied its storage (a browser that blocks third-party storage): Gradio's BrowserState then
// throws while it mounts, and, depending on which module loads first, the rest of the page
// never mounts ("Loading..." for ever). Each denied storage is replaced by one kept in memory
// for the page's life: the page works, and keeps nothing across a reload, as the browser asked.
(() => {
  for (const name of ["localStorage", "sessionStorage"]) {
    try {
      void window[name].length;
    } catch (error) {
      const items = new Map();
      const memory = {
        get length() {
          return items.size;
        },
        key: (index) => [...items.keys()][index] ?? null,
        getItem: (key) => (items.has(String(key)) ? items.get(String(key)) : null),
        setItem: (key, value) => void items.set(String(key), String(value)),
        removeItem: (key) => void items.delete(String(key)),
        clear: () => items.clear(),
      };
      try {
        Object.defineProperty(window, name, { value: memory, configurable: true });
      } catch (denied) {
        // left as the browser has it
      }
    }
  }
})();
