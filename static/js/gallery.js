// The gallery as a viewer: a lightbox over the tiles (previous/next, arrow keys,
// Escape, fit or 100 %), the facts the server rendered beside each tile, copy seed,
// multi-select for a zip download, and new images arriving live. The markup is all
// server-rendered (templates/tasks/gallery/); this only moves it around.

const grid = document.getElementById("gallery-grid");
const viewer = document.getElementById("viewer");
const image = document.getElementById("viewer-image");
const facts = document.getElementById("viewer-facts");
const position = document.getElementById("viewer-position");
const download = document.getElementById("viewer-download");
const zoomButton = viewer.querySelector("[data-viewer='zoom']");
const zipButton = document.getElementById("gallery-zip-button");
const selectedCount = document.getElementById("gallery-selected");
let current = -1;

const tiles = () => [...grid.querySelectorAll(".gallery-item[data-full]")];

function show(index) {
  const all = tiles();
  if (all.length === 0) return;
  current = (index + all.length) % all.length;
  const tile = all[current];
  image.src = tile.dataset.full;
  image.alt = tile.querySelector("img")?.alt ?? "";
  download.href = tile.dataset.download;
  position.textContent = `${current + 1} of ${all.length}`;
  facts.replaceChildren(tile.querySelector("template.viewer-facts").content.cloneNode(true));
  viewer.dataset.outputId = tile.dataset.outputId;
  history.replaceState(null, "", `#output-${tile.dataset.outputId}`);
}

function open(index) {
  setZoom("fit");
  show(index);
  if (!viewer.open) viewer.showModal();
}

function close() {
  if (viewer.open) viewer.close();
}

function setZoom(zoom) {
  viewer.dataset.zoom = zoom;
  zoomButton.setAttribute("aria-pressed", String(zoom === "actual"));
  zoomButton.textContent = zoom === "actual" ? "Fit" : "100 %";
}

viewer.addEventListener("close", () => {
  current = -1;
  history.replaceState(null, "", location.pathname + location.search);
});

grid.addEventListener("click", (event) => {
  const link = event.target.closest("a.open");
  const tile = link?.closest(".gallery-item[data-full]");
  if (!tile || event.ctrlKey || event.metaKey || event.shiftKey) return; // new tab: the page
  event.preventDefault();
  open(tiles().indexOf(tile));
});

viewer.addEventListener("click", async (event) => {
  const action = event.target.closest("[data-viewer]")?.dataset.viewer;
  if (action === "prev") show(current - 1);
  else if (action === "next") show(current + 1);
  else if (action === "close") close();
  else if (action === "zoom") setZoom(viewer.dataset.zoom === "fit" ? "actual" : "fit");
  const copy = event.target.closest(".copy-seed");
  if (copy) await copySeed(copy);
});

document.addEventListener("keydown", (event) => {
  if (!viewer.open || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === "ArrowLeft") show(current - 1);
  else if (event.key === "ArrowRight") show(current + 1);
  else if (event.key === "z" || event.key === "Z") setZoom(viewer.dataset.zoom === "fit" ? "actual" : "fit");
  else if (event.key === "Escape") close(); // the dialog closes itself too; this is for the URL
  else return;
  event.preventDefault();
});

async function copySeed(button) {
  const seed = button.dataset.seed;
  try {
    await navigator.clipboard.writeText(seed);
  } catch {
    // No clipboard permission (an insecure origin): select it for Ctrl+C instead.
    const code = button.parentElement.querySelector("code.seed");
    if (code) getSelection().selectAllChildren(code);
    button.textContent = "Press Ctrl+C";
    return;
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy seed"), 1500);
}

// -- multi-select ------------------------------------------------------------------

const boxes = () => [...grid.querySelectorAll("input[name='ids']")];

function countSelected() {
  const count = boxes().filter((box) => box.checked).length;
  selectedCount.textContent = String(count);
  zipButton.disabled = count === 0;
}

grid.addEventListener("change", (event) => {
  if (event.target.matches("input[name='ids']")) {
    event.target.closest(".gallery-item").classList.toggle("selected", event.target.checked);
    countSelected();
  }
});

document.querySelector(".gallery-toolbar").addEventListener("click", (event) => {
  const which = event.target.closest("[data-select]")?.dataset.select;
  if (!which) return;
  for (const box of boxes()) {
    box.checked = which === "all";
    box.closest(".gallery-item").classList.toggle("selected", box.checked);
  }
  countSelected();
});

// -- live arrivals -------------------------------------------------------------------

function newestShown() {
  return Math.max(0, ...[...grid.querySelectorAll("[data-output-id]")].map((t) => Number(t.dataset.outputId)));
}

async function fetchArrivals() {
  const url = `${grid.dataset.itemsUrl}&after=${newestShown()}`;
  const response = await fetch(url, { credentials: "same-origin", headers: { "X-Fragment": "1" } });
  if (!response.ok) return;
  const template = document.createElement("template");
  template.innerHTML = (await response.text()).trim();
  const fresh = [...template.content.children].filter((tile) => !document.getElementById(tile.id));
  if (fresh.length === 0) return;
  for (const tile of fresh) tile.classList.add("arrived");
  grid.prepend(...fresh);
  const count = document.getElementById("gallery-count");
  count.textContent = String(Number(count.textContent) + fresh.length);
  document.querySelector(".gallery-empty").hidden = true;
  // The viewer keeps showing the same image; its position moved down.
  if (viewer.open) show(tiles().findIndex((tile) => tile.dataset.outputId === viewer.dataset.outputId));
}

// Older pages stay as they are: what is new belongs on the first.
if (grid.dataset.livePage === "first") {
  document.addEventListener("live:swapped", (event) => {
    if (event.detail.target.startsWith("outputs-new-")) fetchArrivals();
  });
  // What arrived between this page's render and its subscription (or while offline).
  document.addEventListener("live:subscribed", fetchArrivals);
}

// /gallery/#output-12 (from the task list and the dashboard) opens that image.
const wanted = /^#output-(\d+)$/.exec(location.hash);
if (wanted) {
  const index = tiles().findIndex((tile) => tile.dataset.outputId === wanted[1]);
  if (index >= 0) open(index);
}
countSelected();
