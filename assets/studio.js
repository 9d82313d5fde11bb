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

  // After Enter: the result area (it says a run is under way) comes into view if it is off
  // screen, as it is on a phone.
  studio.showResult = () => {
    const column = byId("result-column");
    if (!column) return;
    const box = column.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight * 0.5) {
      column.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  };

  // Compare's panel comes into view once it is shown (the page lays it out a moment after
  // the answer arrives, so look for it for up to two seconds).
  studio.showCompare = () => {
    const started = Date.now();
    const look = () => {
      const title = byId("compare-title");
      if (title && title.getBoundingClientRect().height > 0) {
        title.scrollIntoView({ behavior: "smooth", block: "start" });
      } else if (Date.now() - started < 2000) {
        setTimeout(look, 100);
      }
    };
    look();
  };

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

  // Whole captions: each history tile's title holds its caption (the tile may clamp it).
  const titleTiles = () => {
    for (const image of document.querySelectorAll(".step-strip img[alt]")) {
      const tile = image.closest("button");
      if (tile && tile.title !== image.alt) tile.title = image.alt;
    }
  };
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      titleTiles();
    });
  }).observe(document.body, { childList: true, subtree: true });

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
