() => {
  // Kontext Studio's page script (Gradio runs it once the page is ready: `launch(js=...)`).
  // It does only what the server cannot: it says when the studio cannot be reached, keeps a
  // typed instruction across the reload that follows, refuses an oversized file before it is
  // sent, focuses the instruction box without scrolling, and brings the result into view.
  const studio = (window.kontextStudio = window.kontextStudio || {});
  if (studio.started) return;
  studio.started = true;
  const byId = (id) => document.getElementById(id);
  const config = window.gradio_config || {};
  const DRAFT_KEY = "kontext-studio-draft";
  const promptBox = () => document.querySelector("#prompt textarea");
  // The tile of the step the tab shows, in the history.
  const currentTile = () => document.querySelector('#history .tile[aria-current="step"]');

  // A sentence in the status line, for what only the page knows.
  studio.say = (text) => {
    const status = byId("status");
    const target = status?.querySelector(".prose") || status;
    if (!target) return;
    const line = document.createElement("p");
    line.textContent = text;
    target.replaceChildren(line);
  };

  // The instruction bar (plain controls: studio/ui/layout.py, `bar_html`) is drawn disabled
  // and enabled here, now that Enter and Edit are taken by this script. The box grows with
  // what is typed, up to four lines.
  const MAX_LINES = 4;
  const fit = (box) => {
    const style = getComputedStyle(box);
    const px = (name) => parseFloat(style[name]) || 0;
    const borders = px("borderTopWidth") + px("borderBottomWidth");
    const tallest = (px("lineHeight") || 20) * MAX_LINES + px("paddingTop") + px("paddingBottom");
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight, tallest) + borders}px`;
  };
  // Near the instruction's limit (`data-max`: studio/params.py), how long it is, in the box's
  // corner; over it, how much to cut. It was told only at Enter (audit 16). Counted as the
  // server counts: characters, not UTF-16 units, of the trimmed text.
  const count = (box) => {
    const max = Number(box.dataset.max) || 0;
    const length = [...box.value.trim()].length;
    let shown = box.parentElement?.querySelector(".count");
    if (!max || length < max * 0.9) {
      shown?.remove();
      return;
    }
    if (!shown) {
      shown = document.createElement("span");
      shown.className = "count";
      box.after(shown);
    }
    const over = length - max;
    shown.classList.toggle("over", over > 0);
    shown.textContent =
      `${length.toLocaleString("en-US")} / ${max.toLocaleString("en-US")}` +
      (over > 0 ? `: cut ${over.toLocaleString("en-US")}` : "");
  };
  document.addEventListener("input", (event) => {
    if (!event.target?.matches?.("#prompt textarea")) return;
    fit(event.target);
    count(event.target);
  });
  // (The bar's own script enables them as it is drawn: studio/ui/layout.py, `_OPTIONS_JS`.
  // What was typed before this script ran is measured now; an Enter it held is sent below.)
  for (const control of [promptBox(), byId("run")]) {
    if (control) control.disabled = false;
  }
  if (promptBox()?.value) {
    fit(promptBox());
    count(promptBox());
  }

  // The instruction box gets the focus on wide screens, without scrolling (on a phone the
  // page starts at the top: title, banner, source). A phone on its side is a phone: the
  // page's layout is a phone's under 501 px of height (assets/studio.css).
  const wide = () => window.matchMedia("(min-width: 700px) and (min-height: 501px)").matches;
  const unfocused = () => !document.activeElement || document.activeElement === document.body;
  if (wide() && unfocused()) promptBox()?.focus({ preventScroll: true });
  // The Enters (or Edits) the bar held before this script ran are sent now, as if pressed now:
  // the words before each, in turn (`data-held`: how long the box's text was at each), and
  // what was typed after the last stays in the box. A box changed since in another way than
  // typed on is sent whole.
  const held = (() => {
    try {
      return JSON.parse(promptBox()?.dataset.held || "[]");
    } catch {
      return [];
    }
  })();
  if (held.length) {
    delete promptBox().dataset.held;
    setTimeout(() => {
      const box = promptBox();
      if (!box) return;
      const whole = box.value;
      const ends = held.every((end, i) => Number.isInteger(end) && end >= (held[i - 1] ?? 0))
        && held[held.length - 1] <= whole.length ? held : [whole.length];
      let from = 0;
      for (const end of ends) {
        const words = whole.slice(from, end);
        from = end;
        if (!words.trim()) continue;
        box.value = words;
        byId("run")?.click();
      }
      box.value = whole.slice(from);
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }, 0);
  }
  // A page drawn with its first answer takes clicks once its load event has drawn it again
  // (below), or after 5 s if that never answers (the studio out of reach): it stayed inert.
  setTimeout(() => document.documentElement.classList.remove("kontext-predrawn"), 5000);

  // Drafts kept for sessions other than the open one, by session (below).
  const DRAFTS_KEY = "kontext-studio-drafts";
  const NEW_DRAFT = "(new)";
  const drafts = () => {
    try {
      return JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || "{}") || {};
    } catch {
      return {};
    }
  };
  // An instruction typed before a reload (ours, or Gradio's after a lost connection) is put
  // back: nothing typed is lost. It is kept with the session it was typed for: a reload opens
  // the session this browser opened last, perhaps in another tab, and the words for the coffee
  // came back over the cat, one Enter from editing it (UX audit 8). Another session's words
  // wait for it (opening it from the list brings them back, as below).
  const openSession = () => document.querySelector("#history nav.tree")?.dataset.session || "";
  // The session this tab opened, in plain words, for the first answer of the next page
  // (assets/predraw.js): written as Gradio writes the one it keeps (ciphered), when it changes,
  // for the tab (kept over a reload) and for the browser (a new tab opens its last).
  let opened;
  try {
    opened = sessionStorage.getItem("kontext-studio-tab-open") ?? undefined;
  } catch {
    opened = undefined;
  }
  const keepOpened = (session) => {
    if (session === opened) return;
    opened = session;
    try {
      sessionStorage.setItem("kontext-studio-tab-open", session);
      localStorage.setItem("kontext-studio-open", session);
    } catch {
      // (storage refused: the next page is drawn by its load event)
    }
  };
  let draft = null;
  try {
    const saved = sessionStorage.getItem(DRAFT_KEY);
    sessionStorage.removeItem(DRAFT_KEY);
    const parsed = saved ? JSON.parse(saved) : null;
    if (typeof parsed?.text === "string") draft = parsed;
  } catch {
    // (storage refused, or a draft from before: nothing to put back)
  }
  // Once the first history is drawn: the draft from before the reload goes to its session
  // (the open one, or the one it waits for; a draft of a new session's box is that box's),
  // and the open session's own draft, kept while the tab was on another, comes back. After
  // + New and a reload, the words for the new picture came back over the bicycle, and the
  // bicycle's own draft, kept aside, was lost when the tab moved on (UX audit 9).
  let looked = false;
  studio.restoreDraft = () => {
    if (looked || !document.querySelector("#history nav.tree")) return;
    looked = true;
    const here = openSession() || NEW_DRAFT;
    const kept = drafts();
    if (draft) {
      const its = draft.session || NEW_DRAFT;
      if (its === here) kept[here] = draft.text; // (newer than one kept before it)
      else if (!kept[its]) kept[its] = draft.text;
      draft = null;
    }
    const box = promptBox();
    if (box && !box.value && kept[here]) {
      box.value = kept[here];
      box.dispatchEvent(new Event("input", { bubbles: true }));
      delete kept[here];
    }
    try {
      sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(kept));
    } catch {
      // (storage refused)
    }
  };
  // A reload comes back on the step this tab showed, not on the session's newest (sent with
  // the load: studio/ui/events.py): reloaded while another tab's edit ran, the tab came back on
  // that edit, and its next instruction edited that picture (audit 15).
  window.addEventListener("beforeunload", () => {
    // (A page whose load event never answered, the studio out of reach, keeps what it was told
    // to come back on: reloaded twice, it came back on the session's newest.)
    if (document.querySelector("#history nav.tree")?.dataset.seen !== "1") return;
    const step = currentTile()?.dataset.step;
    try {
      if (openSession() && step) {
        sessionStorage.setItem("kontext-studio-shown", `${openSession()}|${step}`);
      } else {
        sessionStorage.removeItem("kontext-studio-shown");
      }
    } catch {
      // (storage refused: the reload shows the session's newest step)
    }
  });
  window.addEventListener("beforeunload", () => {
    const text = promptBox()?.value;
    if (!text) return;
    try {
      sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ text, session: openSession() }));
    } catch {
      // (storage refused: not kept)
    }
  });

  // A draft belongs to its session: opening another session from the list keeps what was
  // typed for this one, and puts back what was typed for that one (or empties the box). It
  // followed into the other session, where one Enter edited the wrong picture (UX audit 5).
  // + New, pressed, keeps it with this session too: in the new one, empty, one Enter made a
  // paid picture from words meant for the old one (UX audit 7). An image pasted or dropped
  // (+ New pressed by the page) takes the box as it is: the words go with the picture given.
  document.addEventListener(
    "click",
    (event) => {
      const row = event.target?.closest?.('#sessions button.session[data-act="open"]');
      const fresh =
        event.isTrusted && event.target?.closest?.("#new-session") && !byId("empty")?.offsetParent;
      const shown = document.querySelector("#sessions button.session.current")?.dataset.step;
      const box = promptBox();
      if (!(row || fresh) || !box || row?.dataset.step === shown) return;
      // The new session's upload box keeps its own draft too: words typed there for a new
      // picture went over the session opened next, and replaced the draft it had (UX audit 8).
      const here = shown || NEW_DRAFT;
      const there = row ? row.dataset.step : NEW_DRAFT;
      const kept = drafts();
      if (box.value.trim()) kept[here] = box.value;
      else delete kept[here];
      const text = kept[there] || "";
      delete kept[there];
      try {
        sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(kept));
      } catch {
        // (storage refused: the draft stays in the box, as before)
        return;
      }
      box.value = text;
      box.dispatchEvent(new Event("input", { bubbles: true }));
      studio.boxEdited = false;
    },
    true,
  );

  // Enter (or Edit) is taken here, at the very moment of the key or the click, before
  // anything goes to the server: the box's text is read and the box emptied right then, and
  // the edit sent carries exactly that text. One path: Enter in the box clicks Edit; a click
  // on Edit takes the text (capture phase, before the bar's own listener sends the event);
  // the event's page function (`send`) then carries what that click took, in order. Each is numbered, so the server takes
  // instructions typed ahead in the order they were typed. The server's reply never writes
  // into the box: what is typed meanwhile stays.
  studio.seq = studio.seq || 0;
  studio.pending = studio.pending || new Map();
  studio.taken = studio.taken || [];
  studio.withdrawn = studio.withdrawn || new Set();
  // A click whose event Gradio did not send within this time was not sent at all (the studio
  // unreachable: Gradio sends no event while its connection is down): its text goes back.
  const UNSENT_MS = 5000;
  const NOT_SENT =
    "⚠ The studio could not be reached, so nothing was sent: your instruction is back in the box.";
  const NOT_SENT_OFFLINE =
    "⚠ The studio cannot be reached just now, so nothing was sent: your instruction stays in " +
    "the box. This page reconnects by itself when it is back.";
  // The options row (plain controls: studio/ui/layout.py, `bar_html`) as it is now.
  const options = () => {
    const row = byId("options");
    const model = row?.querySelector("#model input:checked")?.value || "pro";
    const aspect = row?.querySelector("#aspect")?.value || "match";
    const keep = Boolean(row?.querySelector("#keep-rest input")?.checked);
    const count = row?.querySelector("#count")?.value || "1";
    return { model, aspect, keep, count };
  };
  // The options row is kept with the tab across a reload, as a draft is: a reload put the
  // model back to pro and unticked Keep the rest, and the next edit quietly ran on pro after
  // max was kept (UX audit 5).
  const OPTIONS_KEY = "kontext-studio-options";
  const keepOptions = () => {
    const kept = options();
    const ratio = byId("aspect");
    if (ratio?.disabled && ratio.dataset.chosen) kept.aspect = ratio.dataset.chosen; // (below)
    try {
      sessionStorage.setItem(OPTIONS_KEY, JSON.stringify(kept));
    } catch {
      // (storage refused: the options are only not kept)
    }
  };
  const pick = (select, value) => {
    if (select && [...select.options].some((option) => option.value === value)) {
      select.value = value;
    }
  };
  {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(OPTIONS_KEY) || "null");
    } catch {
      saved = null;
    }
    const row = byId("options");
    if (saved && row) {
      const model = row.querySelector(`#model input[value="${CSS.escape(String(saved.model))}"]`);
      if (model) model.checked = true;
      const keep = row.querySelector("#keep-rest input");
      if (keep) keep.checked = Boolean(saved.keep);
      pick(row.querySelector("#aspect"), String(saved.aspect));
      pick(row.querySelector("#count"), String(saved.count));
    }
  }
  // With Keep the rest the result keeps the source's size and ratio: the ratio shows "Match
  // source", unchangeable, until it is unticked (its choice then comes back). A ratio chosen
  // with it was taken and silently ignored (audit 13).
  const syncRatio = () => {
    const row = byId("options");
    const select = row?.querySelector("#aspect");
    if (!select) return;
    const keep = Boolean(row.querySelector("#keep-rest input")?.checked);
    if (keep && !select.disabled) {
      select.dataset.chosen = select.value;
      pick(select, "match");
    } else if (!keep && select.disabled) {
      pick(select, select.dataset.chosen || select.value);
    }
    select.disabled = keep;
    select.title = keep ? "Keep the rest keeps the source's size and ratio" : "Ratio";
  };
  syncRatio();
  document.addEventListener("change", (event) => {
    if (event.target?.closest?.("#keep-rest")) syncRatio();
    if (event.target?.closest?.("#options")) keepOptions();
  });
  // A tab with no choice of its own (a new tab, or one whose options were never touched)
  // goes on with the model of the step it first shows: a second tab on a session where max
  // had just been kept ran its first edit on pro (UX audit 7). Once; a choice is the tab's.
  studio.followModel = () => {
    let chosen = true;
    try {
      chosen = sessionStorage.getItem(OPTIONS_KEY) !== null;
    } catch {
      // (storage refused: the row is left as it is)
    }
    if (studio.modelFollowed || chosen) return;
    const name = document.querySelector("#history li.current > .tile")?.dataset.model;
    if (!name) return;
    studio.modelFollowed = true;
    const radio = byId("options")?.querySelector(`#model input[value="${CSS.escape(name)}"]`);
    if (radio) radio.checked = true;
  };
  // Queued edits undone one after another come back into the box a line each (below); sent
  // again as they came back, untouched, they go as the edits they were, in order: one Enter
  // sent "make it night" and "add a moon" as one instruction, paid once (UX audit 7). Once
  // the box is typed in, what it holds is one instruction.
  // Each is `{ text, at }`: `at` orders them as they were queued.
  studio.returned = [];
  const lines = (returned) => returned.map((r) => r.text).join("\n");
  let sentAt = -Infinity;
  const BOUNCE_MS = 1000;
  const take = () => {
    const box = promptBox();
    let text = box ? box.value : "";
    let rest = "";
    const returned = studio.returned;
    studio.returned = [];
    if (returned.length > 1 && text === lines(returned)) {
      text = returned[0].text;
      studio.returned = returned.slice(1);
      rest = lines(studio.returned);
    }
    const entry = { text, region: "", options: options() };
    if (text.trim() && box) {
      sentAt = performance.now();
      // A region drawn on the canvas belongs to this edit, and goes with it.
      entry.region = studio.takeRegion ? studio.takeRegion() : "";
      box.value = rest;
      box.dispatchEvent(new Event("input", { bubbles: true }));
      studio.boxEdited = false;
      if (rest) setTimeout(() => byId("run")?.click(), 0); // the next, as if sent after
    }
    return entry;
  };
  // Whether the box was typed in (or emptied by hand) since it was last sent: only a box the
  // page emptied leaves Ctrl+Z to the history (below).
  document.addEventListener("input", (event) => {
    if (event.isTrusted && event.target === promptBox()) studio.boxEdited = true;
  });
  document.addEventListener(
    "keydown",
    (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      if (!event.target?.matches?.("#prompt textarea")) return;
      const run = byId("run");
      if (!run || run.disabled) return;
      event.preventDefault(); // no new line
      // A second Enter in the same moment (a key bounced, or pressed twice) found the box the
      // first had just emptied: "The instruction is empty" replaced the status of the edit
      // just sent (UX audit 9). An Enter on an empty box says so; just after one sent, not.
      if (!event.target.value.trim() && performance.now() - sentAt < BOUNCE_MS) return;
      run.click();
    },
    true,
  );
  // Edit pressed while typing leaves the caret in the box: on a phone the keyboard dropped at
  // every tap of Edit, and the next instruction, typed ahead, needed a tap on the box first.
  // (Focus moves on the press, after which the click still sends.)
  document.addEventListener("mousedown", (event) => {
    const box = promptBox();
    if (box && document.activeElement === box && event.target?.closest?.("#run")) {
      event.preventDefault();
    }
  });
  document.addEventListener(
    "click",
    (event) => {
      if (!event.target?.closest?.("#run")) return;
      // Known to be unreachable (the status line says so): nothing is taken from the box, and
      // nothing is sent. It emptied for five seconds, as if sent, before the words came back
      // (audit 13).
      if (document.body.classList.contains("studio-offline")) {
        event.preventDefault();
        event.stopImmediatePropagation();
        studio.say(NOT_SENT_OFFLINE);
        return;
      }
      const entry = take();
      studio.taken.push(entry);
      // Never sent: it goes, and its text back into the box with a word (UX audit 5: it was
      // lost); an empty one goes too, or the next Enter would send it in place of its own.
      const giveBackEntry = (said) => {
        const at = studio.taken.indexOf(entry);
        if (at < 0) return;
        studio.taken.splice(at, 1);
        if (entry.text.trim()) {
          putBack(entry.text);
          studio.say(said);
        }
      };
      setTimeout(() => giveBackEntry(NOT_SENT), UNSENT_MS);
      // A studio that stopped a moment ago (before the page's look every few seconds found
      // it out): Gradio holds the Enter, and the words were gone for up to five seconds, the
      // status still "Ready" (audit 15). One look now: unanswered, and the Enter not sent,
      // the words come back at once.
      if (entry.text.trim()) {
        reachable(1500).then((ok) => {
          if (!ok) giveBackEntry(NOT_SENT_OFFLINE);
        });
      }
      // The next instruction is typed where the last was (not into the Edit button); on a
      // phone the keyboard is not brought up by Edit (it stays up when Edit was tapped while
      // typing: above).
      if (wide()) promptBox()?.focus({ preventScroll: true });
    },
    true,
  );
  // `at` names each value's place among the event's arguments (studio/ui/events.py).
  const fill = (out, at, values) => {
    for (const [name, value] of Object.entries(values)) {
      if (name in at) out[at[name]] = value;
    }
    return out;
  };
  studio.send = (args, at) => {
    // What goes is what the click (or Enter) took; without one (an event not sent by a
    // click seen here), what the box shows now.
    const entry = studio.taken.shift() || take();
    const out = fill([...args], at, { ...entry.options, prompt: entry.text, region: entry.region });
    if (!entry.text.trim()) return out; // the server says why, in one sentence
    studio.seq += 1;
    out[at.ticket] = String(studio.seq);
    studio.pending.set(studio.seq, entry.text);
    studio.redrawPending();
    return out;
  };
  // pro vs max: the instruction, taken from the box as Enter takes it (so an Enter after it
  // does not pay for it again), the region drawn on the canvas, and the options row as it is.
  // If the server refuses it (its answer's status is a warning), the text goes back.
  studio.withOptions = (args, at) => {
    const entry = take();
    studio.compared = entry.text;
    return fill([...args], at, { ...entry.options, prompt: entry.text, region: entry.region });
  };
  studio.afterCompare = (status) => {
    const text = studio.compared;
    studio.compared = "";
    const said = new DOMParser().parseFromString(String(status || ""), "text/html").body;
    if (text && text.trim() && said.textContent.trim().startsWith("⚠")) putBack(text);
  };
  // Export is one click: a ZIP the server has just made is saved at once, by following its
  // *Download export* link (which stays, to save it again); each export is saved once.
  studio.saveExport = (markup) => {
    const made = new DOMParser().parseFromString(String(markup || ""), "text/html");
    const link = made.querySelector("a[href]");
    const url = link?.getAttribute("href");
    if (url && url !== studio.savedExport) {
      studio.savedExport = url;
      const saving = document.createElement("a");
      saving.href = url;
      saving.download = link.getAttribute("download") || "";
      saving.hidden = true;
      document.body.append(saving);
      saving.click();
      saving.remove();
    }
  };
  // The server's word for the options row: the ratio's "Match source" label (it names the
  // shown step's ratio), and the model of a kept candidate ("model|step", once per keep).
  studio.setOptions = (match, model) => {
    const row = byId("options");
    const option = row?.querySelector('#aspect option[value="match"]');
    if (option && match) option.textContent = match;
    const name = String(model || "").split("|")[0];
    const radio = name && row?.querySelector(`#model input[value="${CSS.escape(name)}"]`);
    if (radio) radio.checked = true;
    // A result kept: the next instruction asks for one result again (several stayed chosen,
    // and each Enter after paid for three: UX audit 3).
    const count = name && row?.querySelector("#count");
    if (count && count.value !== "1") count.value = "1";
    if (name) keepOptions();
  };

  // Keep answers the toast that asked for it: "Keep one of the results first…" stayed over
  // the history, on the kept step, after one was kept (UX audit 5).
  document.addEventListener(
    "click",
    (event) => {
      if (!event.target?.closest?.("#candidates button.keep")) return;
      closeToasts((toast) => toast.textContent.includes("Keep one of the results"));
    },
    true,
  );
  const closeToasts = (which) => {
    for (const toast of document.querySelectorAll('[data-testid="toast-body"]')) {
      if (which(toast)) toast.querySelector('[data-testid="toast-close"]')?.click();
    }
  };

  // A warning the status line says too, while the status line is in view, is not also a
  // toast: at the window's bottom right it lay over the tab's own step in the history for ten
  // seconds (UX audit 6). With the status line out of view (scrolled away on a phone) it stays.
  const spaced = (text) => (text || "").replace(/\s+/g, " ").trim();
  const inView = (el) => {
    const box = el?.getBoundingClientRect();
    return Boolean(box?.height) && box.top >= 0 && box.bottom <= window.innerHeight;
  };
  const dropSaidToasts = () => {
    const status = byId("status");
    if (!document.querySelector('[data-testid="toast-body"]') || !inView(status)) return;
    const said = spaced(status.textContent);
    closeToasts((toast) => {
      const texts = [...toast.querySelectorAll('[data-testid="toast-text"]')].map((text) =>
        spaced(text.textContent),
      );
      return texts.length > 0 && texts.every((text) => text && said.includes(text));
    });
  };

  // Gradio wraps each picture of the canvas in a button that does nothing here: two Tab stops
  // on the canvas that led nowhere, one of them the hidden source's (UX audit 10).
  const FRAMES = "#result .image-container > button, #before .image-container > button";
  const quietFrames = () => {
    for (const frame of document.querySelectorAll(FRAMES)) {
      if (frame.tabIndex !== -1) frame.tabIndex = -1;
    }
  };

  // The divider between two compared steps is a slider the keyboard moves too: ← and → by a
  // twentieth of the picture, Home and End to its edges (it took a mouse only: UX audit 10).
  // Gradio's slider follows a drag (d3-drag), so a key plays one: press on the divider, move
  // to where it goes, let go. The zoom's "Undo" is called what it does.
  const DIVIDER = '#slider [data-testid="slider"]';
  const sliderKeys = () => {
    const divider = document.querySelector(DIVIDER);
    if (divider && divider.getAttribute("role") !== "slider") {
      divider.setAttribute("role", "slider");
      divider.tabIndex = 0;
      divider.setAttribute("aria-label", "Divider between the two steps");
      divider.setAttribute("aria-valuemin", "0");
      divider.setAttribute("aria-valuemax", "100");
      divider.setAttribute("aria-valuenow", "50");
    }
    const reset = document.querySelector('#slider button[aria-label="Undo"]');
    if (reset) {
      reset.setAttribute("aria-label", "Reset the zoom");
      reset.title = "Reset the zoom";
    }
  };
  // Where an <img> shown "contain" draws its picture (the element is wider or taller), and
  // the picture's own size.
  const drawnPicture = (img) => {
    const box = img?.getBoundingClientRect();
    if (!box || !img.naturalWidth || !img.naturalHeight) return null;
    const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
    const width = img.naturalWidth * scale;
    const height = img.naturalHeight * scale;
    return {
      left: box.left + (box.width - width) / 2,
      top: box.top + (box.height - height) / 2,
      width,
      height,
      natural: [img.naturalWidth, img.naturalHeight],
    };
  };
  const SLIDER_KEYS = { ArrowLeft: -0.05, ArrowRight: 0.05, Home: -1, End: 1 };
  // Where the divider's line is drawn, across the page.
  const dividerX = (divider) => {
    const line = (divider.querySelector(".inner") || divider).getBoundingClientRect();
    return line.left + line.width / 2;
  };
  // Dragged, it says where it was let go (a screen reader heard the value before the drag).
  const sayWhere = () => {
    const divider = document.querySelector(DIVIDER);
    const picture = drawnPicture(document.querySelector("#slider img"));
    if (!divider || !picture?.width) return;
    const at = (dividerX(divider) - picture.left) / picture.width;
    divider.setAttribute("aria-valuenow", String(Math.round(Math.min(Math.max(at, 0), 1) * 100)));
  };
  let dragged = false;
  document.addEventListener("pointerdown", (event) => {
    dragged = Boolean(event.target?.closest?.("#slider"));
  });
  for (const name of ["pointerup", "pointercancel"]) {
    window.addEventListener(name, () => {
      if (dragged) requestAnimationFrame(sayWhere);
      dragged = false;
    });
  }
  document.addEventListener(
    "keydown",
    (event) => {
      const divider = event.target?.closest?.(DIVIDER);
      const step = SLIDER_KEYS[event.key];
      if (!divider || step === undefined || event.ctrlKey || event.metaKey || event.altKey) {
        return;
      }
      event.preventDefault();
      const picture = drawnPicture(document.querySelector("#slider img"));
      if (!picture?.width) return;
      const from = dividerX(divider);
      // From where it says it is, unless it has been moved since (it stepped 40 → 44: where
      // it is drawn is a few pixels off).
      const seen = (from - picture.left) / picture.width;
      const said = Number(divider.getAttribute("aria-valuenow")) / 100;
      const here = Math.abs(seen - said) < 0.03 ? said : seen;
      const at = Math.min(Math.max(Math.round((here + step) * 100) / 100, 0), 1);
      const to = picture.left + at * picture.width;
      const y = picture.top + picture.height / 2;
      const mouse = (type, x) =>
        new MouseEvent(type, {
          bubbles: true,
          cancelable: true,
          view: window,
          clientX: x,
          clientY: y,
          button: 0,
        });
      divider.dispatchEvent(mouse("mousedown", from));
      window.dispatchEvent(mouse("mousemove", to));
      window.dispatchEvent(mouse("mouseup", to));
      divider.setAttribute("aria-valuenow", String(Math.round(at * 100)));
    },
    true,
  );

  // Import's file picker offers exports (ZIPs) first; another file picked anyway is answered
  // by the import itself, in its words (studio/ui/layout.py).
  byId("import")?.parentElement?.querySelector('input[type="file"]')?.setAttribute(
    "accept",
    ".zip,application/zip",
  );

  // The folded panels (studio/ui/layout.py, `fold`): a toggle opens its panel (the server
  // shows it and fills it in for the tab's step: true is returned, and the toggle's event goes)
  // or, when it is open, folds it again here, at once.
  const FOCUSABLE = ["input", "select", "textarea", "button"]
    .map((tag) => `${tag}:not([disabled])`)
    .concat('[tabindex="0"]')
    .join(", ");
  document.addEventListener(
    "click",
    (event) => {
      const toggle = event.target?.closest?.("#folds button[data-fold]");
      // (A click from the keyboard has no pointer position: `detail` 0.)
      if (toggle) studio.focusInto = event.detail === 0 ? toggle.dataset.fold : null;
      // A session opened from the list with the keyboard: the focus goes back to the list's
      // head once it is drawn (it fell to the page's body, and Tab started over: audit 13).
      const row = event.target?.closest?.('#sessions button[data-act="open"]');
      if (row) studio.focusSessions = event.detail === 0;
      // An example (or a link) opened from the keyboard: the focus goes to the instruction
      // box once the picture is drawn (it fell to the page's body: audit 15).
      const opening = event.target?.closest?.("#examples [data-act='example'], #load-link");
      if (opening) studio.focusBox = event.detail === 0;
    },
    true,
  );
  studio.toggleFold = (toggle) => {
    const panel = byId(toggle.dataset.fold);
    const shown = Boolean(panel?.offsetParent) && !panel.classList.contains("folded");
    toggle.setAttribute("aria-expanded", String(!shown));
    if (shown) {
      panel.classList.add("folded");
      return false;
    }
    panel?.classList.remove("folded");
    reveal(toggle.dataset.fold, performance.now() + 5000);
    return true;
  };
  // "Rename or delete" shows the open session's name ready to edit (the session list carries
  // it: `data-name`). A panel shown before is filled here as it opens, and the server sends no
  // name (`fold` "manage", `filled`): its fill landed after what was typed at once and replaced
  // it. A redrawn list (another session, a rename elsewhere) brings the box along, unless what
  // is in it was typed for this same session.
  const nameBox = () => document.querySelector("#session-name input, #session-name textarea");
  studio.fillName = (fold = "manage") => {
    const box = nameBox();
    const list = document.querySelector("#sessions details.sessions");
    if (fold !== "manage" || !box || !list) return false;
    const id = list.dataset.session || "";
    const name = list.dataset.name || "";
    const typed = box.dataset.for === id && box.value !== box.dataset.filled;
    if (box.value !== name && !typed) {
      box.value = name;
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
    if (box.value === name || !typed) {
      box.dataset.filled = name;
      box.dataset.for = id;
    }
    return true;
  };
  // An opened panel is brought into the window once the server has shown it (and again once
  // what it shows has loaded): "Compare two steps" used to open below the window's edge.
  // The second look leaves a page scrolled since the first alone: whoever scrolled away
  // from the panel meant to (it was pulled back 0.7 s after it opened).
  const reveal = (id, until, again = true, left = null) => {
    const panel = byId(id);
    if (!panel?.offsetParent) {
      if (performance.now() < until) requestAnimationFrame(() => reveal(id, until, again, left));
      return;
    }
    if (left !== null && Math.abs(window.scrollY - left) > 1) return;
    // (On a phone the instruction bar is fixed over the window's bottom: above it, or the
    // panel's top if it is taller than that.) A panel above the window comes down to its
    // bottom, with what lies above it: "Compare two steps", opened in the canvas's place from
    // its toggle far below on a phone, came to the window's top, the header pushed off screen
    // (UX audit 4); now the page is back where the canvas was seen.
    // Opened from the keyboard, the focus goes into it: "Compare two steps" opens above its
    // toggle, and Tab went on to the toggles after it (audit 13).
    if (studio.focusInto === id) {
      studio.focusInto = null;
      panel.querySelector(FOCUSABLE)?.focus({ preventScroll: true });
    }
    const box = panel.getBoundingClientRect();
    const bottom = window.innerHeight - (wide() ? 0 : byId("bar")?.offsetHeight || 0);
    if (box.top < 0 || box.bottom > bottom) {
      window.scrollBy({ top: Math.min(box.top - 8, box.bottom - bottom + 8) });
      settleKeeps(true); // (what was under the finger has moved)
    }
    const at = window.scrollY;
    if (again) setTimeout(() => reveal(id, until, false, at), 700);
  };
  // A Keep that has just appeared, or moved as the page brought the results into view, takes
  // no tap for a moment (disabled): on a phone, "Keep max" came to rest exactly where "pro vs
  // max" had been tapped as the results landed, and a second tap there kept a result unseen
  // (UX audit 6). Only the page's own are touched (`data-settling`).
  const SETTLE_MS = 600;
  let settleUntil = 0;
  const settleKeeps = (moved = false) => {
    const now = performance.now();
    if (moved) settleUntil = now + SETTLE_MS;
    const settling = now < settleUntil;
    for (const keep of document.querySelectorAll("#candidates button.keep")) {
      if (settling && !keep.disabled) {
        keep.disabled = true;
        keep.dataset.settling = "1";
      } else if (!settling && keep.dataset.settling) {
        keep.disabled = false;
        delete keep.dataset.settling;
      }
    }
    if (moved) setTimeout(() => settleKeeps(), SETTLE_MS + 20);
  };
  // Results on show are brought into the window once when they appear, and again as the first
  // of them lands (with its Keep): on a phone they were under the instruction bar (UX audit 3).
  let cands = "";
  new MutationObserver(() => {
    const shown = document.querySelector("#candidates .cands");
    const keeps = shown ? shown.querySelectorAll("button.keep").length : 0;
    const now = shown ? `${shown.querySelectorAll("figure.card").length}|${keeps}` : "";
    if (now && now !== cands) {
      if (keeps) settleKeeps(true);
      reveal("candidates", performance.now() + 5000);
    } else if (keeps) {
      settleKeeps(); // (drawn again meanwhile: still settling, or not)
    }
    cands = now;
  }).observe(document.body, { childList: true, subtree: true });

  const putBack = (text, first = false) => {
    const box = promptBox();
    studio.returned = [];
    if (box) {
      box.value = !box.value ? text : first ? `${text}\n${box.value}` : `${box.value}\n${text}`;
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
  };

  // An Enter the studio's door refused (too many of this visitor's events already waiting, or
  // a page that names nobody: studio/ui/tabs.py) never reached the server: its instruction goes
  // back into the box, and the status line says why. Gradio's client sends each event, and
  // reads their answers, with the page's `fetch`.
  const fetched = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = String(input?.url || input);
    let answer;
    try {
      answer = await fetched(input, init);
    } catch (error) {
      // The studio could not be reached (it stopped, or the connection dropped): an Enter
      // sent then went nowhere, and its text, taken from the box, was lost (UX audit 5).
      if (/\/queue\/join(\?|$)/.test(url)) unsent(init?.body);
      throw error;
    }
    if (answer.status === 429 && /\/queue\/join(\?|$)/.test(url)) {
      refusedAtDoor(init?.body, answer.clone());
    } else if (answer.headers.get("x-kontext-refused")) {
      refusedToNobody(decodeURIComponent(answer.headers.get("x-kontext-refused")));
    }
    return answer;
  };
  const refusedToNobody = (sentence) => {
    for (const [seq, text] of [...studio.pending]) {
      studio.pending.delete(seq);
      putBack(text);
    }
    studio.redrawPending();
    studio.say(`⚠ ${sentence}`);
  };
  // The instructions an event's body carries (its ticket and its text), back into the box:
  // whether any was; null for a body that is not an event's.
  const giveBack = (body) => {
    let data = [];
    try {
      data = JSON.parse(body).data || [];
    } catch (error) {
      return null;
    }
    let given = false;
    for (const [seq, text] of [...studio.pending]) {
      if (data.includes(String(seq)) && data.includes(text)) {
        studio.pending.delete(seq);
        putBack(text);
        given = true;
      }
    }
    studio.redrawPending();
    return given;
  };
  const unsent = (body) => {
    if (giveBack(body)) {
      studio.say(NOT_SENT);
    }
  };
  const refusedAtDoor = async (body, answer) => {
    if (giveBack(body) === null) return;
    try {
      const { detail } = await answer.json();
      if (detail) studio.say(`⚠ ${detail}`);
    } catch (error) {
      // not the door's answer
    }
  };

  // The page's own "queued" tiles, until the server's history has taken their Enter; one the
  // server refused goes back into the box (nothing typed is lost).
  studio.redrawPending = () => {
    studio.paintRegion?.();
    const tree = document.querySelector("#history nav.tree");
    if (!tree) return;
    const done = Number(tree.dataset.done) || 0;
    const refused = Number(tree.dataset.refused) || 0;
    for (const [seq, text] of [...studio.pending]) {
      if (seq > done) continue;
      studio.pending.delete(seq);
      if (seq === refused) putBack(text);
    }
    tree.querySelectorAll("li.pending").forEach((li) => li.remove());
    const list = tree.querySelector("ol.path");
    if (!list) return;
    let after = list.querySelector("li.node.current");
    for (const text of studio.pending.values()) {
      const li = document.createElement("li");
      li.className = "node queued pending";
      li.innerHTML =
        '<span class="tile"><span class="thumb placeholder">queued</span>' +
        '<span class="text"><span class="head"><span class="cap"></span></span>' +
        '<span class="meta">queued</span></span></span>';
      li.querySelector(".cap").textContent = text;
      if (after) after.after(li);
      else list.append(li);
      after = li;
    }
    keepInView(tree);
  };
  // The history scrolls inside its own box: after each redraw, the tab's step and what is
  // queued after it are brought into that box's view (a long path had them below the window).
  const keepInView = (tree) => {
    const box = byId("history");
    const last = [...tree.querySelectorAll("ol.path > li.queued, ol.path > li.pending")].pop();
    const target = last || tree.querySelector("ol.path > li.node.current");
    if (!box || !target) return;
    const outer = box.getBoundingClientRect();
    const inner = target.getBoundingClientRect();
    if (inner.bottom > outer.bottom) box.scrollTop += inner.bottom - outer.bottom + 8;
    else if (inner.top < outer.top) box.scrollTop -= outer.top - inner.top + 8;
    // On a phone the history is a strip that scrolls sideways.
    if (inner.right > outer.right) box.scrollLeft += inner.right - outer.right + 8;
    else if (inner.left < outer.left) box.scrollLeft -= outer.left - inner.left + 8;
  };
  // The history's box shrinks when a panel under it opens (Rename or delete, and its "are you
  // sure"): the tab's step stays in its view (it went below the box: UX audit 5).
  const historyBox = byId("history");
  if (historyBox && window.ResizeObserver) {
    let height = 0;
    new ResizeObserver(([entry]) => {
      const now = Math.round(entry.contentRect.height);
      const tree = historyBox.querySelector("nav.tree");
      if (now < height && tree) keepInView(tree);
      height = now;
    }).observe(historyBox);
  }

  // Keys, when the focus is not in a text box: Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z (or Ctrl+Y)
  // redo, ← → along the path; Space (held) shows the step's source. In the instruction box,
  // Enter sends (above) and Shift+Enter starts a new line (the box's own).
  const typing = (target) =>
    Boolean(
      target?.closest?.("textarea, input, select, [contenteditable='true'], [role='slider']"),
    );
  // A control whose own keys are undo and redo (text), as against a radio, a checkbox or a
  // list of choices, where Ctrl+Z did nothing at all (UX audit 4).
  const NOT_TEXT = ["radio", "checkbox", "button", "submit", "range", "color", "file"];
  const textEntry = (target) =>
    Boolean(target?.closest?.("textarea, [contenteditable='true']")) ||
    (target?.tagName === "INPUT" && !NOT_TEXT.includes(target.type));
  // A key pressed again before the page has drawn the last one's move (Ctrl+Z three times in
  // quick succession) waits for that drawing, then moves on from there: each press is one
  // move (Gradio would drop a click sent while the last is on its way, and the step a move
  // starts from is the one drawn).
  const moves = { queued: [], busy: false, timer: 0 };
  const moveDone = () => {
    clearTimeout(moves.timer);
    moves.busy = false;
    const next = moves.queued.shift();
    if (next) requestAnimationFrame(() => move(next));
  };
  const move = (act) => {
    if (moves.busy) {
      if (moves.queued.length < 20) moves.queued.push(act);
      return;
    }
    if (!act()) return moveDone();
    moves.busy = true;
    moves.timer = setTimeout(moveDone, 3000); // a move that changed nothing draws nothing
  };
  studio.moved = moveDone;
  const press = (id) =>
    move(() => {
      const button = byId(id);
      if (!button || button.disabled) return false;
      button.click();
      return true;
    });
  const walk = (step) =>
    move(() => {
      const nodes = [...document.querySelectorAll("#history li.node:not(.pending)")];
      const at = nodes.findIndex((li) => li.classList.contains("current"));
      const tile = nodes[at + step]?.querySelector(".tile");
      if (at < 0 || !tile) return false;
      // The focus on a tile goes along: left on the step before, a second Enter went back
      // there (UX audit 10). Space there still shows "before", as on a tile clicked.
      const focused = document.activeElement?.closest?.("#history .tile");
      tile.click();
      if (focused) {
        tile.focus({ preventScroll: true });
        clicked = tile.dataset.step || "";
      }
      return true;
    });
  // Space presses a button the keyboard brought the focus to; a history tile that merely kept
  // the focus after a click lets Space show "before", as anywhere else.
  let clicked = "";
  document.addEventListener(
    "pointerdown",
    (event) => {
      clicked = event.target?.closest?.("#history button")?.dataset?.step || "";
    },
    true,
  );
  document.addEventListener(
    "keydown",
    (event) => {
      if (event.key === "Tab") clicked = "";
    },
    true,
  );
  const pressesButton = (target) => {
    const button = target?.closest?.("button");
    const kept = clicked && button?.closest("#history") && button.dataset.step === clicked;
    // (The picture on the canvas is a button of Gradio's: clicked, it keeps the focus too.)
    return Boolean(button) && !kept && !button.closest("#result");
  };
  const canvas = () => byId("canvas");
  const holdBefore = (on) => canvas()?.classList.toggle("show-before", on);
  // In the instruction box while the page has emptied it (right after Enter), Ctrl+Z and
  // Ctrl+Shift+Z are the history's too: the box has nothing of its own to undo (its value is
  // set by the page, which a browser's own undo does not follow), and they did nothing there
  // (UX audit 3). A box emptied by hand keeps them: the browser's undo brings its text back
  // (the history's took it, and moved the tab: UX audit 4). Escape leaves the box, for the
  // keys that move along the path.
  const emptyBox = (target) => target === promptBox() && !target.value && !studio.boxEdited;
  document.addEventListener("keydown", (event) => {
    // Escape folds the session list, as it closes any menu: it stayed open until a click
    // outside it (UX audit 10). The focus, if it was in the list, goes back to its head.
    const list = document.querySelector("#sessions details[open]");
    if (event.key === "Escape" && list) {
      const inside = list.contains(event.target);
      list.open = false;
      if (inside) list.querySelector("summary")?.focus({ preventScroll: true });
      return;
    }
    // Escape folds the open panel the focus is in (or on whose toggle it is), and the focus
    // goes back to its toggle, as a dialog closes; it left all four open (audit 15). Not
    // while a list of the panel's own is open: Escape closes that first.
    const open = [...document.querySelectorAll('button[data-fold][aria-expanded="true"]')];
    const target = event.target;
    const toggle = open.find((t) => t === target || byId(t.dataset.fold)?.contains(target));
    const listOpen = target !== toggle && target.getAttribute?.("aria-expanded") === "true";
    if (event.key === "Escape" && toggle && !listOpen) {
      if (toggle !== event.target || byId(toggle.dataset.fold)?.offsetParent) toggle.click();
      toggle.focus({ preventScroll: true });
      return;
    }
    if (event.key === "Escape" && event.target === promptBox()) {
      event.target.blur();
      return;
    }
    const mod = event.ctrlKey || event.metaKey;
    // ↓ ↑ (Home, End) go down and up the open session list, as in any menu: ↓ scrolled the
    // page under it instead (audit 12).
    const along = { ArrowDown: 1, ArrowUp: -1, Home: -Infinity, End: Infinity }[event.key];
    if (along && list?.contains(event.target) && !mod && !event.altKey && !event.shiftKey) {
      const rows = [...list.querySelectorAll("summary, .list button")];
      const at = rows.indexOf(event.target.closest("summary, button"));
      const to = Math.max(0, Math.min(rows.length - 1, (at < 0 ? 0 : at) + along));
      event.preventDefault();
      rows[to]?.focus();
      rows[to]?.scrollIntoView({ block: "nearest" });
      return;
    }
    // The history is one stop of Tab (its current tile): ↓ ↑ (Home, End) go among its tiles,
    // as in any tree; Enter opens the one focused.
    const tile = event.target?.closest?.("#history button.tile");
    if (along && tile && !mod && !event.altKey && !event.shiftKey) {
      const tiles = [...document.querySelectorAll("#history button.tile")].filter((t) =>
        t.checkVisibility(),
      );
      const to = Math.max(0, Math.min(tiles.length - 1, tiles.indexOf(tile) + along));
      event.preventDefault();
      tiles[to]?.focus();
      tiles[to]?.scrollIntoView({ block: "nearest" });
      return;
    }
    const key = event.key.toLowerCase();
    if (
      !mod &&
      !event.altKey &&
      !event.isComposing &&
      event.key.length === 1 &&
      event.key !== " " &&
      !textEntry(event.target) &&
      !event.target?.closest?.("select")
    ) {
      // A character typed with the focus elsewhere (on a history tile just clicked, after
      // Escape, on an option) goes on at the end of the instruction: every key was dropped
      // (UX audit 5). The box takes the focus now, so this key lands in it.
      const box = promptBox();
      if (box && !box.disabled) {
        if (spaceTap) typedSpace(box); // (Space still down: it came first)
        box.focus({ preventScroll: true });
        box.selectionStart = box.selectionEnd = box.value.length;
      }
      return;
    }
    if (mod && (key === "z" || key === "y")) {
      if (textEntry(event.target) && !emptyBox(event.target)) return;
    } else if (typing(event.target)) {
      return; // (arrows and Space in a control are its own)
    }
    if (mod && key === "z") {
      event.preventDefault();
      press(event.shiftKey ? "redo" : "undo");
    } else if (mod && key === "y") {
      event.preventDefault();
      press("redo");
    } else if (!mod && !event.altKey && event.key === "ArrowLeft") {
      event.preventDefault();
      walk(-1);
    } else if (!mod && !event.altKey && event.key === "ArrowRight") {
      event.preventDefault();
      walk(1);
    } else if (event.key === " " && !pressesButton(event.target)) {
      event.preventDefault();
      holdBefore(true);
      spaceTap = event.repeat ? null : { at: performance.now() };
    }
  });
  // Space tapped (not held) with the focus outside the box, while the box holds words, was
  // the space between two of them: typing on after a click on a history tile gave "add ared
  // sky" (UX audit 9). It goes on at the end of the box, as the other keys do (above); held,
  // it shows the step's source, as before.
  let spaceTap = null;
  const TAP_MS = 300;
  const typedSpace = (box) => {
    spaceTap = null;
    holdBefore(false);
    if (!box.value || /\s$/.test(box.value)) return false;
    box.value += " ";
    studio.boxEdited = true;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    return true;
  };
  document.addEventListener("keyup", (event) => {
    if (event.key !== " ") return;
    const box = promptBox();
    const tapped = spaceTap && performance.now() - spaceTap.at < TAP_MS;
    if (tapped && box && !box.disabled && typedSpace(box)) {
      box.focus({ preventScroll: true });
      box.selectionStart = box.selectionEnd = box.value.length;
    }
    spaceTap = null;
    holdBefore(false);
  });
  // The "◐ Before" button: hold it to see the step's source in place of the step.
  document.addEventListener("pointerdown", (event) => {
    if (event.target?.closest?.("#hold")) holdBefore(true);
  });
  for (const name of ["pointerup", "pointercancel", "blur"]) {
    window.addEventListener(name, () => holdBefore(false));
  }
  // (Only when the history was drawn again without them: redrawing is itself a change.)
  new MutationObserver(() => {
    const drawn = document.querySelectorAll("#history li.pending").length;
    const tree = document.querySelector("#history nav.tree");
    const fresh = tree && tree.dataset.seen !== "1";
    // A queued edit this tab's undo or ✕ took back: its instruction goes back into the box,
    // once: among those already put back (nothing else typed), in the order they were queued
    // (✕ on one, then on the one before it, gave them back in reverse, and sent them so:
    // audit 13); else before what is there.
    const withdrawn = tree?.dataset.withdrawn;
    if (withdrawn && !studio.withdrawn.has(withdrawn)) {
      studio.withdrawn.add(withdrawn);
      const text = tree.dataset.withdrawnText || "";
      const at = tree.dataset.withdrawnAt || "";
      const box = promptBox();
      const before = box?.value === lines(studio.returned) ? studio.returned : null;
      if (text.trim() && before) {
        const byQueued = (a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0);
        const now = [...before, { text, at }].sort(byQueued);
        box.value = "";
        putBack(lines(now));
        studio.returned = now;
      } else if (text.trim()) {
        putBack(text, true);
      }
    }
    // *Download export* is the export of the session it was made for, as it was: once the
    // tab shows another (or a new one), it is put away; it downloaded the other session's ZIP
    // (UX audit 9). So it is once the session has changed (a step more, a new name): it
    // saved the ZIP of two steps beside a tree of four (UX audit 11). Back on that session,
    // unchanged, it is there again.
    const exported = document.querySelector("#export-file a[data-session]");
    const holder = byId("export-file");
    if (exported && holder) {
      const stale =
        exported.dataset.session !== tree?.dataset.session ||
        exported.dataset.contents !== tree?.dataset.contents;
      if (holder.hasAttribute("data-stale") !== stale) holder.toggleAttribute("data-stale", stale);
    }
    if (fresh && studio.focusSessions) {
      studio.focusSessions = false;
      document.querySelector("#sessions summary")?.focus({ preventScroll: true });
    }
    if (fresh && tree.dataset.session && studio.focusBox) {
      studio.focusBox = false;
      if (wide()) promptBox()?.focus({ preventScroll: true });
    }
    if (fresh && tree.dataset.session && studio.canvasWanted) {
      if (performance.now() < studio.canvasWanted) {
        byId("canvas")?.scrollIntoView({ block: "start" });
      }
      studio.canvasWanted = 0;
      setTimeout(() => document.documentElement.style.removeProperty("overflow-anchor"), 2000);
    }
    if (tree && (fresh || drawn !== studio.pending.size)) {
      tree.dataset.seen = "1";
      studio.restoreDraft();
      studio.followModel();
      studio.redrawPending();
      if (fresh) studio.moved();
    }
    if (fresh) keepOpened(tree.dataset.session || "");
    // The page drawn with its first answer takes clicks once its load event has drawn it
    // again (assets/predraw.js).
    if (fresh && !tree.hasAttribute("data-predrawn")) {
      document.documentElement.classList.remove("kontext-predrawn");
    }
  }).observe(document.body, { childList: true, subtree: true });

  // A region for the next edit, drawn on the canvas: a brush, a box and an eraser paint a
  // mask at the image's own size (white: may change). Sent with the next Enter as a PNG (or,
  // for one box alone, as "box:x,y,w,h"), then cleared. A step edited in a region shows its
  // region outlined on the canvas.
  const region = { tool: null, mask: null, boxes: 0, strokes: 0, drawing: null, key: "" };
  const canvasImage = () => document.querySelector("#result img");
  // Where the canvas's image is drawn inside its element (object-fit: contain).
  const imageBox = () => drawnPicture(canvasImage());
  const layer = () => {
    let view = byId("region-layer");
    const host = canvas();
    if (!host) return null;
    if (!view) {
      view = document.createElement("canvas");
      view.id = "region-layer";
      view.setAttribute("aria-label", "The region for the next edit");
      host.append(view);
      view.addEventListener("pointerdown", startStroke);
      view.addEventListener("pointermove", moveStroke);
      view.addEventListener("pointerup", endStroke);
      view.addEventListener("pointercancel", endStroke);
    }
    const box = imageBox();
    if (box) {
      const hostBox = host.getBoundingClientRect();
      view.style.left = `${box.left - hostBox.left}px`;
      view.style.top = `${box.top - hostBox.top}px`;
      view.style.width = `${box.width}px`;
      view.style.height = `${box.height}px`;
      if (view.width !== Math.round(box.width)) view.width = Math.round(box.width);
      if (view.height !== Math.round(box.height)) view.height = Math.round(box.height);
    }
    view.classList.toggle("active", Boolean(region.tool));
    return view;
  };
  const freshMask = () => {
    const box = imageBox();
    if (!box) return null;
    const key = `${canvasImage().src}|${box.natural}`;
    if (!region.mask || region.key !== key) {
      region.mask = document.createElement("canvas");
      [region.mask.width, region.mask.height] = box.natural;
      region.boxes = 0;
      region.strokes = 0;
      region.lastBox = null;
      region.key = key;
    }
    return region.mask;
  };
  const toImage = (event) => {
    const box = imageBox();
    if (!box) return null;
    const x = ((event.clientX - box.left) / box.width) * box.natural[0];
    const y = ((event.clientY - box.top) / box.height) * box.natural[1];
    return { x, y, box };
  };
  const paint = () => {
    // The region in a translucent red over the image; the step's own region as an outline.
    const view = layer();
    if (!view) return;
    const ctx = view.getContext("2d");
    ctx.clearRect(0, 0, view.width, view.height);
    // Nothing is drawn before the picture has its size: an outline drawn on the layer's
    // default size ran past the picture's edge, until something drew it again (UX audit 5).
    if (!imageBox()) return;
    if (region.mask && (region.boxes || region.strokes)) {
      ctx.save();
      ctx.globalAlpha = 0.45;
      ctx.drawImage(region.mask, 0, 0, view.width, view.height);
      ctx.globalCompositeOperation = "source-in";
      ctx.fillStyle = "#ef4444";
      ctx.fillRect(0, 0, view.width, view.height);
      ctx.restore();
    } else {
      paintStepRegion(ctx, view);
    }
    if (region.drawing?.tool === "box" && region.drawing.to) {
      const { from, to } = region.drawing;
      const sx = view.width / region.mask.width;
      const sy = view.height / region.mask.height;
      ctx.strokeStyle = "#ef4444";
      ctx.lineWidth = 2;
      ctx.strokeRect(from.x * sx, from.y * sy, (to.x - from.x) * sx, (to.y - from.y) * sy);
    }
  };
  const stepRegionImage = new Image();
  stepRegionImage.onload = () => paint();
  // A stored mask is an opaque grey image (white where the edit might change): drawn as it is,
  // it tinted the whole step. It becomes an amber layer, made once for each mask at the
  // canvas's size (a full-size mask of a large photo is never read whole): a solid line along
  // the region's edge and a faint fill inside (the fill alone, at 20 %, was all but invisible
  // on a brown cup: UX audit 4).
  let tint = { key: "", canvas: null };
  const regionTint = (src, view) => {
    const key = `${src}@${view.width}x${view.height}`;
    if (tint.key === key) return tint.canvas;
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(view.width));
    canvas.height = Math.max(1, Math.round(view.height));
    const g = canvas.getContext("2d");
    g.drawImage(stepRegionImage, 0, 0, canvas.width, canvas.height);
    const pixels = g.getImageData(0, 0, canvas.width, canvas.height);
    const p = pixels.data;
    const [w, h] = [canvas.width, canvas.height];
    const inside = new Uint8Array(w * h);
    for (let j = 0; j < w * h; j += 1) inside[j] = p[j * 4] * p[j * 4 + 3] > 127 * 255 ? 1 : 0;
    const at = (x, y) => (x >= 0 && y >= 0 && x < w && y < h ? inside[y * w + x] : 0);
    const LINE = 2; // the edge's width, in the canvas's pixels
    for (let y = 0; y < h; y += 1) {
      for (let x = 0; x < w; x += 1) {
        const i = (y * w + x) * 4;
        let alpha = 0;
        if (inside[y * w + x]) {
          alpha = 50;
          for (let d = 1; d <= LINE && alpha < 255; d += 1) {
            if (!at(x - d, y) || !at(x + d, y) || !at(x, y - d) || !at(x, y + d)) alpha = 255;
          }
        }
        p[i] = 245;
        p[i + 1] = 158;
        p[i + 2] = 11;
        p[i + 3] = alpha;
      }
    }
    g.putImageData(pixels, 0, 0);
    tint = { key, canvas };
    return canvas;
  };
  const paintStepRegion = (ctx, view) => {
    const node = document.querySelector("#history li.node.current");
    const kind = node?.dataset.region;
    if (!kind) return;
    ctx.save();
    ctx.strokeStyle = "#f59e0b";
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 2;
    const on = (node.dataset.regionOn || "").split(",").map(Number);
    const boxText = node.dataset.regionBox;
    if (boxText && on.length === 2 && on[0] && on[1]) {
      const [x, y, w, h] = boxText.split(",").map(Number);
      const sx = view.width / on[0];
      const sy = view.height / on[1];
      ctx.strokeRect(x * sx, y * sy, w * sx, h * sy);
    } else if (node.dataset.regionMask) {
      const src = node.dataset.regionMask;
      if (!stepRegionImage.src.endsWith(src)) {
        stepRegionImage.src = src;
      } else if (stepRegionImage.complete && stepRegionImage.naturalWidth) {
        // (A fill at 0.35 hid the step's own pixels there: UX audit 1.)
        ctx.drawImage(regionTint(src, view), 0, 0, view.width, view.height);
      }
    }
    ctx.restore();
  };
  function startStroke(event) {
    if (!region.tool) return;
    const mask = freshMask();
    const at = toImage(event);
    if (!mask || !at) return;
    event.preventDefault();
    event.target.setPointerCapture?.(event.pointerId);
    region.drawing = { tool: region.tool, from: at, to: null, last: at };
    if (region.tool !== "box") strokeTo(at);
  }
  function strokeTo(at) {
    const ctx = region.mask.getContext("2d");
    const width = Math.max(6, Math.round(region.mask.width * 0.035));
    ctx.save();
    ctx.globalCompositeOperation =
      region.drawing.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = width;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(region.drawing.last.x, region.drawing.last.y);
    ctx.lineTo(at.x + 0.01, at.y + 0.01);
    ctx.stroke();
    ctx.restore();
    region.drawing.last = at;
    if (region.drawing.tool === "brush") region.strokes += 1;
    paint();
  }
  function moveStroke(event) {
    if (!region.drawing) return;
    const at = toImage(event);
    if (!at) return;
    if (region.drawing.tool === "box") {
      region.drawing.to = at;
      paint();
    } else {
      strokeTo(at);
    }
  }
  function endStroke(event) {
    const drawing = region.drawing;
    region.drawing = null;
    if (!drawing || drawing.tool !== "box" || !drawing.to) return paint();
    const x = Math.max(0, Math.min(drawing.from.x, drawing.to.x));
    const y = Math.max(0, Math.min(drawing.from.y, drawing.to.y));
    const w = Math.abs(drawing.to.x - drawing.from.x);
    const h = Math.abs(drawing.to.y - drawing.from.y);
    if (w >= 2 && h >= 2) {
      const ctx = region.mask.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(x, y, w, h);
      region.boxes += 1;
      region.lastBox = [x, y, w, h].map(Math.round);
    }
    paint();
  }
  studio.paintRegion = () => requestAnimationFrame(paint);
  studio.clearRegion = () => {
    region.mask = null;
    region.boxes = 0;
    region.strokes = 0;
    paint();
  };
  studio.takeRegion = () => {
    if (!region.mask || !(region.boxes || region.strokes)) return "";
    let sent;
    // A box goes in the pixels of the picture the edit starts from. Drawn on another picture
    // than the one shown now (the tab moved, or the step it waited for landed meanwhile), it is
    // scaled to the one shown, where it is drawn; while the tab's step still runs, the picture
    // the edit will start from is not known yet: it goes as a mask, which is scaled to it (a
    // box in the old picture's pixels landed elsewhere on the new one: UX audit 2).
    const img = canvasImage();
    const shown = img?.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null;
    const step = document.querySelector("#history li.node.current");
    const waiting = Boolean(step?.matches(".running, .queued"));
    if (region.boxes === 1 && !region.strokes && region.lastBox && shown && !waiting) {
      const [sx, sy] = [shown[0] / region.mask.width, shown[1] / region.mask.height];
      const [x, y, w, h] = region.lastBox;
      sent = `box:${[x * sx, y * sy, w * sx, h * sy].map(Math.round).join(",")}`;
    } else {
      const out = document.createElement("canvas");
      out.width = region.mask.width;
      out.height = region.mask.height;
      const ctx = out.getContext("2d");
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, out.width, out.height);
      ctx.drawImage(region.mask, 0, 0);
      sent = out.toDataURL("image/png");
    }
    studio.pickTool(null);
    studio.clearRegion();
    return sent;
  };
  studio.pickTool = (tool) => {
    region.tool = tool && tool !== region.tool ? tool : null;
    for (const button of document.querySelectorAll("#tools [data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === region.tool));
    }
    layer();
    paint();
  };
  // On a phone the history is a strip far below the picture: a tap on one of its steps brings
  // the picture into view, where that step is about to show (it changed off screen: UX
  // audit 4). So does a tap on an example, or on the link's Load, below the upload box, and
  // again once the new session is drawn: the browser kept what was in view in place as the
  // upload box gave way to the picture, and on a phone on its side the new session came with
  // the page at its history (audit 13).
  document.addEventListener("click", (event) => {
    const tile = event.target?.closest?.(
      "#history button[data-act='go'], #history .branch, #examples [data-act='example'], #load-link",
    );
    const canvas = byId("canvas");
    if (!tile || !canvas || wide()) return;
    // (Below the upload box, only when the picture's place is above the window: a phone
    // upright stays at its top.)
    const opening = !tile.closest("#history");
    if (opening && canvas.getBoundingClientRect().top >= 0) return;
    canvas.scrollIntoView({ block: "start" });
    if (opening) {
      studio.canvasWanted = performance.now() + 30000;
      document.documentElement.style.overflowAnchor = "none"; // (until it is drawn: below)
    }
  });
  // On a phone the history is a strip far below the picture: the edits queued in it, each with
  // its ✕, are shown over the instruction bar too, so changing one's mind needs no scrolling
  // (UX audit 6: the queue was 110 px under the window's edge). A ✕ here presses the
  // history's own (the server checks it as ever); wide, the history is on screen and this is
  // not shown (studio.css).
  const chips = document.createElement("div");
  chips.id = "queue-chips";
  chips.setAttribute("role", "group");
  chips.setAttribute("aria-label", "Queued edits");
  chips.hidden = true;
  document.body.append(chips);
  const drawChips = () => {
    const cancels = [...document.querySelectorAll("#history li.queued button[data-act='cancel']")];
    const key = cancels.map((x) => `${x.dataset.step}:${x.getAttribute("aria-label")}`).join("|");
    if (chips.dataset.key === key) return;
    chips.dataset.key = key;
    chips.replaceChildren(
      ...cancels.map((cancel) => {
        const chip = document.createElement("span");
        chip.className = "chip";
        const text = document.createElement("span");
        text.className = "chip-text";
        text.textContent = `◷ ${cancel.closest("li")?.querySelector(".cap")?.textContent || ""}`;
        const x = document.createElement("button");
        x.type = "button";
        x.textContent = "✕";
        x.title = cancel.title;
        x.setAttribute("aria-label", cancel.getAttribute("aria-label") || "Cancel");
        x.addEventListener("click", () => {
          const own = [...document.querySelectorAll("#history button[data-act='cancel']")].find(
            (b) => b.dataset.step === cancel.dataset.step,
          );
          own?.click();
          // (Gone at once; drawn again from the history if the server kept it queued.)
          chip.remove();
          chips.dataset.key = "";
        });
        chip.append(text, x);
        return chip;
      }),
    );
    chips.hidden = cancels.length === 0;
  };
  // What follows each redraw of the page: the name box, the queue's chips, toasts said twice.
  // For a screen reader: the canvas's picture is named after the step it shows (it had no
  // name), and the status line is read out as it changes (it was never: audit 15).
  const nameCanvas = () => {
    const status = byId("status");
    if (status && !status.hasAttribute("aria-live")) {
      status.setAttribute("role", "status");
      status.setAttribute("aria-live", "polite");
    }
    const picture = document.querySelector("#result img");
    const name = currentTile()?.getAttribute("aria-label");
    if (picture && name && picture.alt !== name) picture.alt = name;
  };
  new MutationObserver(() => {
    nameCanvas();
    studio.fillName();
    drawChips();
    dropSaidToasts();
    quietFrames();
    sliderKeys();
  }).observe(document.body, { childList: true, subtree: true });
  // After a queued edit's ✕ the focus goes to the box its words come back to (on a phone, it
  // leaves the ✕): the tree drawn again put the next queued edit's ✕ where the focus was, and
  // the next Enter cancelled that one too (audit 13).
  document.addEventListener("click", (event) => {
    if (!event.target?.closest?.('#history [data-act="cancel"]')) return;
    if (wide()) {
      promptBox()?.focus({ preventScroll: true });
    } else {
      document.activeElement?.blur?.();
    }
  });
  // Undo and redo under the picture on a phone press the history's own (disabled or not).
  document.addEventListener("click", (event) => {
    const proxy = event.target?.closest?.("#tools [data-proxy]");
    if (!proxy) return;
    event.preventDefault();
    byId(proxy.dataset.proxy)?.click();
  });
  document.addEventListener("click", (event) => {
    const button = event.target?.closest?.("#tools [data-tool]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.tool === "clear") {
      studio.pickTool(null);
      studio.clearRegion();
    } else {
      freshMask();
      studio.pickTool(button.dataset.tool);
    }
  });
  window.addEventListener("resize", () => paint());
  // The canvas's picture loaded (a fresh browser opening on a step drawn in a region): the
  // layer takes the picture's place and size. (A load does not bubble: caught on its way.)
  document.addEventListener(
    "load",
    (event) => {
      if (event.target === canvasImage()) studio.paintRegion();
    },
    true,
  );
  new MutationObserver(() => {
    nameCanvas();
    if (canvas()) requestAnimationFrame(paint);
  }).observe(document.body, { attributes: true, attributeFilter: ["src"], subtree: true });

  // A file over the upload limit gets the studio's own sentence, before it is sent, instead
  // of Gradio's red "Error" over the source.
  const limit = Number(config.max_file_size) || 0;
  const megabytes = (bytes) => Math.ceil(bytes / (1024 * 1024));
  const tooBig = (files) => [...(files || [])].find((file) => limit && file.size > limit);
  const overLimit = (file) =>
    `The file is ${megabytes(file.size)} MB, over the ${megabytes(limit)} MB limit; ` +
    "pick a smaller one.";
  const refuse = (event, file) => {
    event.stopImmediatePropagation();
    event.preventDefault();
    studio.say(`⚠ ${overLimit(file)}`);
  };
  document.addEventListener(
    "change",
    (event) => {
      const input = event.target;
      if (!input?.matches?.("#source input[type=file]")) return;
      const file = tooBig(input.files);
      if (file) {
        refuse(event, file);
        input.value = "";
      }
    },
    true,
  );
  document.addEventListener(
    "drop",
    (event) => {
      if (!event.target?.closest?.("#source")) return;
      const file = tooBig(event.dataTransfer?.files);
      if (file) refuse(event, file);
    },
    true,
  );
  // A file dropped anywhere else on the page (the canvas of an open session, say) starts a
  // session from it, as a paste does; the browser used to open it in place of the studio
  // (UX audit 4). Text dragged into the box stays the box's.
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  document.addEventListener("dragover", (event) => {
    if (carriesFiles(event) && !event.target?.closest?.("#source")) event.preventDefault();
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event) || event.target?.closest?.("#source")) return;
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) startFrom(file);
  });
  // A file dropped or pasted is looked at before the open session is left for a new one: a
  // text file, or one named .png that is not a picture, closed the session shown and left the
  // tab on an empty new one, with the draft typed for the old photo one Enter from generating
  // a paid picture (UX audit 9); a text file also brought Gradio's raw "Invalid file type".
  // Its first bytes are read (not the whole picture): those of every format the studio takes
  // (PNG, JPEG, GIF, BMP, TIFF, WebP, and AVIF or HEIC by their "ftyp"); a damaged picture of
  // one of them goes to the studio, which says what is wrong with it.
  const IMAGE_HEADS = [
    [0, [0x89, 0x50, 0x4e, 0x47]],
    [0, [0xff, 0xd8, 0xff]],
    [0, [0x47, 0x49, 0x46, 0x38]],
    [0, [0x42, 0x4d]],
    [0, [0x49, 0x49, 0x2a, 0x00]],
    [0, [0x4d, 0x4d, 0x00, 0x2a]],
    [8, [0x57, 0x45, 0x42, 0x50]],
    [4, [0x66, 0x74, 0x79, 0x70]],
  ];
  const notReadable = async (file) => {
    if (tooBig([file])) return overLimit(file);
    let head;
    try {
      head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    } catch {
      return null; // (unreadable here: the studio says what it makes of it)
    }
    const picture = IMAGE_HEADS.some(([at, bytes]) => bytes.every((b, i) => head[at + i] === b));
    return picture
      ? null
      : `${file.name || "The file"} is not an image the studio can read; nothing was changed.`;
  };
  const startFrom = async (file) => {
    const problem = await notReadable(file);
    if (problem) {
      studio.say(`⚠ ${problem}`);
      return;
    }
    if (!byId("empty")?.offsetParent) byId("new-session")?.click();
    pasteInto(file, performance.now() + 10000);
  };

  // Ctrl+V of an image: it goes in as a file picked in the upload box would (with the same
  // size check), starting a session from it; with a session open, a new one (+ New, then the
  // image, once the upload box is there: a paste there did nothing and said nothing). Not a
  // paste into the link box, nor text pasted into a text box.
  const pasteInto = (image, until) => {
    const input = byId("empty")?.offsetParent && byId("source")?.querySelector("input[type=file]");
    if (!input) {
      if (performance.now() < until) requestAnimationFrame(() => pasteInto(image, until));
      else studio.say("⚠ The pasted image was not taken: click + New, then paste it again.");
      return;
    }
    const files = new DataTransfer();
    files.items.add(image);
    input.files = files.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };
  // A file pasted that is no picture (a PDF, say) gets its sentence, as one dropped does: it
  // did nothing and said nothing (audit 15).
  document.addEventListener("paste", (event) => {
    if (event.target?.closest?.("#link")) return;
    const files = [...(event.clipboardData?.files || [])];
    const file = files.find((f) => f.type.startsWith("image/")) || files[0];
    if (!file) return;
    if (typing(event.target) && event.clipboardData.types.includes("text/plain")) return;
    event.preventDefault();
    startFrom(file);
  });

  // A lost connection is named as such: a cheap request every few seconds; two misses in a row
  // and the status line says the studio cannot be reached. When it answers again the page
  // reloads (as Gradio does), showing what the store holds.
  const root = String(config.root || window.location.origin).replace(/\/+$/, "");
  // Whether the studio answers a cheap request within `ms`.
  const reachable = async (ms) => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ms);
    try {
      const answer = await fetch(`${root}/robots.txt`, { cache: "no-store", signal: abort.signal });
      return answer.ok;
    } catch (error) {
      return false;
    } finally {
      clearTimeout(timer);
    }
  };
  const EVERY_MS = 3000;
  let misses = 0;
  let offline = false;
  const beat = async () => {
    const ok = await reachable(EVERY_MS);
    if (ok) {
      misses = 0;
      if (offline) window.location.reload();
      return;
    }
    misses += 1;
    if (misses >= 2 && !offline) {
      // (Said once: said again at each look, it replaced "nothing was sent" 3 s after an
      // Enter: audit 14.)
      offline = true;
      document.body.classList.add("studio-offline");
      studio.say(
        "⚠ The studio cannot be reached: it stopped, or the connection dropped. This page " +
          "reconnects by itself when it is back; edits already sent are kept.",
      );
    }
  };
  setInterval(beat, EVERY_MS);
}
