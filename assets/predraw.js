// Run before Gradio mounts the page (`launch(head=...)`). The page's first answer may carry
// the tab's session already drawn (`kontext_predrawn` in Gradio's config: studio/ui/predraw.py):
// the visitor's newest session at its current step, which is what the page's load event shows
// a tab with nothing in its storage. It goes into the components only when the tab will show
// that very session and step; else the page mounts as before and its load event draws it.
// What a tab opened is kept in plain words for this (`studio.js`, "kontext-studio-open"): the
// session Gradio keeps for it is ciphered.
(() => {
  const config = window.gradio_config;
  const drawn = config && config.kontext_predrawn;
  if (!drawn || !Array.isArray(config.components)) return;
  delete config.kontext_predrawn;
  let shown, open, stored;
  try {
    shown = sessionStorage.getItem("kontext-studio-shown");
    open =
      sessionStorage.getItem("kontext-studio-tab-open") ?? localStorage.getItem("kontext-studio-open");
    // (`localStorage.getItem` of the session Gradio keeps reads the tab's own copy first:
    // assets/storage.js.)
    stored = localStorage.getItem("kontext-studio-session") !== null;
  } catch (error) {
    return;
  }
  // The session the load event will open: the one this tab (or, for a new tab, the browser)
  // opened last, else the newest, which is the one drawn. Kept but not named: unknown.
  if (open === null && stored) return;
  if (open && open !== drawn.session) return;
  // A reload comes back on the step the tab showed (studio.js, `beforeunload`).
  const [shownSession, shownStep] = (shown || "").split("|");
  if (shown && shownSession === drawn.session && shownStep !== drawn.step) return;
  for (const component of config.components) {
    const props = drawn.props[String(component.id)];
    if (!props || !component.props) continue;
    for (const [name, value] of Object.entries(props)) {
      // (A `gr.HTML` block's own props: those the load event changes, merged.)
      component.props[name] =
        name === "props" && value && typeof value === "object"
          ? { ...(component.props.props || {}), ...value }
          : value;
    }
  }
  // The canvas's picture is asked for now, while Gradio loads: the canvas mounts a third of a
  // second later, and found it still on its way (the page was usable ~0.1 s after its bar).
  const canvas = config.components.find((c) => c.props?.elem_id === "result");
  const url = canvas?.props?.value?.url;
  if (typeof url === "string" && url) {
    const link = document.createElement("link");
    link.rel = "preload";
    link.as = "image";
    link.href = url;
    link.fetchPriority = "high";
    document.head.append(link);
  }
  // Until the load event has answered, the page takes no clicks but in the instruction bar
  // (assets/outside.css): a click's answer could come before the load's, which would undo it.
  // (The page script lets them through once the load has drawn the page, or after 5 s.)
  document.documentElement.classList.add("kontext-predrawn");
})();
