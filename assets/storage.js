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

// The session a tab shows is its own across a reload. Gradio keeps it in the browser's
// storage (the BrowserState "kontext-studio-session", studio/ui/layout.py), which every tab of
// the browser shares: a reload opened the session another tab had opened last, with the words
// typed for this one gone to it (UX audit 8). What this tab writes there is copied into its
// own session storage (kept by the tab over a reload, and by a duplicated tab), and read back
// from there first; a new tab opens the session the browser opened last, as before.
(() => {
  const SHARED = "kontext-studio-session";
  const OWN = "kontext-studio-tab-session";
  let shared, own;
  try {
    shared = window.localStorage;
    own = window.sessionStorage;
  } catch (error) {
    return;
  }
  if (!(shared instanceof Storage) || !(own instanceof Storage)) return; // (stand-ins: above)
  const { getItem, setItem, removeItem } = Storage.prototype;
  Storage.prototype.getItem = function (key) {
    if (this === shared && key === SHARED) {
      const mine = getItem.call(own, OWN);
      if (mine !== null) return mine;
    }
    return getItem.call(this, key);
  };
  Storage.prototype.setItem = function (key, value) {
    setItem.call(this, key, value);
    if (this === shared && key === SHARED) {
      try {
        setItem.call(own, OWN, value);
      } catch (error) {
        // (the tab's copy refused: a reload opens the browser's last session, as before)
      }
    }
  };
  Storage.prototype.removeItem = function (key) {
    removeItem.call(this, key);
    if (this === shared && key === SHARED) removeItem.call(own, OWN);
  };
})();
