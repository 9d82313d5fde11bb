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

  // A sentence in the status line, for what only the page knows.
  studio.say = (text) => {
    const status = byId("status");
    const target = status?.querySelector(".md") || status;
    if (!target) return;
    const line = document.createElement("p");
    line.textContent = text;
    target.replaceChildren(line);
  };

  // The instruction box gets the focus on wide screens, without scrolling (on a phone the
  // page starts at the top: title, banner, source).
  if (window.matchMedia("(min-width: 700px)").matches) {
    promptBox()?.focus({ preventScroll: true });
  }

  // An instruction typed before a reload (ours, or Gradio's after a lost connection) is put
  // back: nothing typed is lost.
  const draft = sessionStorage.getItem(DRAFT_KEY);
  sessionStorage.removeItem(DRAFT_KEY);
  const box = promptBox();
  if (draft && box && !box.value) {
    box.value = draft;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }
  window.addEventListener("beforeunload", () => {
    const text = promptBox()?.value;
    if (text) sessionStorage.setItem(DRAFT_KEY, text);
  });

  // Enter (or Edit) is taken here, at once, before anything goes to the server: the
  // instruction is read, the box emptied, and a "queued" tile shows in the history. Each Enter
  // is numbered, so the server takes instructions typed ahead in the order they were typed.
  // The server's reply never writes into the box: what is typed meanwhile stays.
  studio.seq = studio.seq || 0;
  studio.pending = studio.pending || new Map();
  studio.send = (args, promptAt, ticketAt) => {
    const text = typeof args[promptAt] === "string" ? args[promptAt] : "";
    if (!text.trim()) return args; // the server says why, in one sentence
    studio.seq += 1;
    const out = [...args];
    out[ticketAt] = String(studio.seq);
    const box = promptBox();
    if (box && box.value.startsWith(text)) {
      box.value = box.value.slice(text.length).replace(/^\n/, "");
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
    studio.pending.set(studio.seq, text);
    studio.redrawPending();
    return out;
  };

  // The page's own "queued" tiles, until the server's history has taken their Enter; one the
  // server refused goes back into the box (nothing typed is lost).
  studio.redrawPending = () => {
    const tree = document.querySelector("#history nav.tree");
    if (!tree) return;
    const done = Number(tree.dataset.done) || 0;
    const refused = Number(tree.dataset.refused) || 0;
    for (const [seq, text] of [...studio.pending]) {
      if (seq > done) continue;
      studio.pending.delete(seq);
      if (seq === refused) {
        const box = promptBox();
        if (box) {
          box.value = box.value ? `${box.value}\n${text}` : text;
          box.dispatchEvent(new Event("input", { bubbles: true }));
        }
      }
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
        '<span class="text"><span class="cap"></span><span class="meta"> · queued</span></span></span>';
      li.querySelector(".cap").textContent = text;
      if (after) after.after(li);
      else list.append(li);
      after = li;
    }
  };

  // Keys, when the focus is not in a text box: Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z (or Ctrl+Y)
  // redo, ← → along the path; Space (held) shows the step's source. In the instruction box,
  // Enter sends and Shift+Enter starts a new line (Gradio's own box does both).
  const typing = (target) =>
    Boolean(target?.closest?.("textarea, input, select, [contenteditable='true']"));
  const press = (id) => {
    const button = byId(id);
    if (button && !button.disabled) button.click();
  };
  const walk = (step) => {
    const nodes = [...document.querySelectorAll("#history li.node:not(.pending)")];
    const at = nodes.findIndex((li) => li.classList.contains("current"));
    const next = nodes[at + step];
    next?.querySelector(".tile")?.click();
  };
  const canvas = () => byId("canvas");
  const holdBefore = (on) => canvas()?.classList.toggle("show-before", on);
  document.addEventListener("keydown", (event) => {
    if (typing(event.target)) return;
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
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
    } else if (event.key === " " && !event.target?.closest?.("button")) {
      event.preventDefault();
      holdBefore(true);
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " ") holdBefore(false);
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
    if (tree && (fresh || drawn !== studio.pending.size)) {
      tree.dataset.seen = "1";
      studio.redrawPending();
    }
  }).observe(document.body, { childList: true, subtree: true });

  // A file over the upload limit gets the studio's own sentence, before it is sent, instead
  // of Gradio's red "Error" over the source.
  const limit = Number(config.max_file_size) || 0;
  const megabytes = (bytes) => Math.ceil(bytes / (1024 * 1024));
  const tooBig = (files) => [...(files || [])].find((file) => limit && file.size > limit);
  const refuse = (event, file) => {
    event.stopImmediatePropagation();
    event.preventDefault();
    studio.say(
      `⚠ The file is ${megabytes(file.size)} MB, over the ${megabytes(limit)} MB limit; ` +
        "pick a smaller one.",
    );
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

  // A lost connection is named as such: a cheap request every few seconds; two misses in a row
  // and the status line says the studio cannot be reached. When it answers again the page
  // reloads (as Gradio does), showing what the store holds.
  const root = String(config.root || window.location.origin).replace(/\/+$/, "");
  const EVERY_MS = 3000;
  let misses = 0;
  let offline = false;
  const beat = async () => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), EVERY_MS);
    let ok = false;
    try {
      const answer = await fetch(`${root}/robots.txt`, { cache: "no-store", signal: abort.signal });
      ok = answer.ok;
    } catch (error) {
      ok = false;
    } finally {
      clearTimeout(timer);
    }
    if (ok) {
      misses = 0;
      if (offline) window.location.reload();
      return;
    }
    misses += 1;
    if (misses >= 2) {
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
