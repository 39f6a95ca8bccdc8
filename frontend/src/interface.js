// The controls around the images: the toolbar, the series browser and the keyboard shortcuts.
import * as csTools from "@cornerstonejs/tools";
import { S, config, status, view, viewportOf } from "./state.js";
import { hideMessage, showMessage } from "./messages.js";
import { isPhone } from "./display.js";
import { PRESETS, cameraChange, cineToggle, presetApply, primaryToolSet } from "./tools.js";
import { layoutSet, seriesShow } from "./layout.js";
import { mprEnter } from "./mpr.js";

export function button(label, action, key) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.dataset.action = key;
  element.addEventListener("click", action);
  return element;
}

export function toolbarBuild() {
  const bar = document.getElementById("toolbar");
  const tools = ["windowLevel", "pan", "zoom", "scroll", "length", "angle", "ellipse", "rectangle", "probe"];
  for (const key of tools) bar.append(button(S[key], () => primaryToolSet(key), `tool-${key}`));
  for (const key of ["fit", "rotate", "flipH", "flipV", "invert", "reset"]) {
    bar.append(button(S[key], () => cameraChange(key), key));
  }
  bar.append(button(S.cine, cineToggle, "cine"));
  for (const key of Object.keys(PRESETS)) bar.append(button(S[key], () => presetApply(key), `preset-${key}`));
  for (const layout of ["1x1", "1x2", "2x2"]) bar.append(button(layout, () => layoutSet(layout), `layout-${layout}`));
  bar.append(button(S.mpr, mprEnter, "mpr"));
  // A phone has no keyboard: its help is the touch gestures.
  const help = button("?", () => showMessage(isPhone() ? S.touchHelp : S.shortcutsHelp, "info"), "help");
  help.title = S.shortcuts;
  bar.append(help);
  // On a phone the whole toolbar takes several rows above the images: it shows the tools used most,
  // and a button shows the rest (CSS hides `.extra` on narrow screens until the bar is expanded).
  for (const element of bar.querySelectorAll("button")) {
    if (!PHONE_TOOLS.has(element.dataset.action)) element.classList.add("extra");
  }
  const more = button(S.moreTools, () => {
    const expanded = bar.classList.toggle("expanded");
    more.textContent = expanded ? S.fewerTools : S.moreTools;
    more.setAttribute("aria-expanded", String(expanded));
  }, "more-tools");
  more.setAttribute("aria-expanded", "false");
  bar.append(more);
}

const PHONE_TOOLS = new Set(["tool-windowLevel", "tool-scroll", "tool-zoom", "tool-length", "invert", "reset", "help"]);

export function toolbarUpdate() {
  document.querySelectorAll("#toolbar button").forEach((element) => {
    const action = element.dataset.action;
    const active =
      action === `tool-${view.activePrimary}` ||
      action === `layout-${status.layout}` ||
      (action === "mpr" && status.mpr === "ready") ||
      (action === "cine" && view.cinePlaying);
    element.classList.toggle("active", active);
  });
}

export function seriesBrowserBuild() {
  const browser = document.getElementById("series-browser");
  for (const series of config.series) {
    const item = document.createElement("button");
    item.type = "button";
    item.dataset.series = series.id;
    const image = document.createElement("img");
    image.alt = "";
    image.loading = "lazy";
    // The archive renders native grayscale and colour only; a compressed series keeps its label.
    image.addEventListener("error", () => (image.style.visibility = "hidden"));
    if (series.largestBytes <= config.maxInstanceBytes) image.src = series.thumbnailUrl;
    const label = document.createElement("span");
    label.textContent = `${series.number ?? ""} ${series.modality} ${series.description} (${series.count} ${S.images})`;
    item.append(image, label);
    item.addEventListener("click", () => {
      hideMessage();
      seriesShow(series);
    });
    browser.append(item);
  }
}

export function keyboardBind() {
  const keys = {
    w: () => primaryToolSet("windowLevel"),
    p: () => primaryToolSet("pan"),
    z: () => primaryToolSet("zoom"),
    s: () => primaryToolSet("scroll"),
    l: () => primaryToolSet("length"),
    a: () => primaryToolSet("angle"),
    e: () => primaryToolSet("ellipse"),
    r: () => primaryToolSet("rectangle"),
    o: () => primaryToolSet("probe"),
    i: () => cameraChange("invert"),
    h: () => cameraChange("flipH"),
    v: () => cameraChange("flipV"),
    f: () => cameraChange("fit"),
    t: () => cameraChange("rotate"),
    0: () => cameraChange("reset"),
    1: () => presetApply("lung"),
    2: () => presetApply("mediastinum"),
    3: () => presetApply("bone"),
    4: () => presetApply("brain"),
    5: () => presetApply("abdomen"),
    m: () => mprEnter(),
    " ": () => cineToggle(),
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const viewport = viewportOf();
    if ((event.key === "ArrowDown" || event.key === "ArrowUp" || event.key === "PageDown" || event.key === "PageUp") && viewport) {
      const delta = event.key === "ArrowDown" || event.key === "PageDown" ? 1 : -1;
      if (viewport.scroll) viewport.scroll(delta, false);
      else csTools.utilities.scroll(viewport, { delta });
      event.preventDefault();
      return;
    }
    const action = keys[event.key.toLowerCase()];
    if (action) {
      action();
      event.preventDefault();
    }
  });
}

// On a phone the report panel has no room beside the images: a button opens it over them and a
// button inside closes it.
export function reportToggleBind() {
  const toggle = document.getElementById("report-toggle");
  const panel = document.getElementById("report-panel");
  if (!toggle || !panel) return;
  const set = (open) => {
    panel.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  };
  toggle.addEventListener("click", () => set(!panel.classList.contains("open")));
  for (const close of panel.querySelectorAll("[data-report-close]")) close.addEventListener("click", () => set(false));
}
