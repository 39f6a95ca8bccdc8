// The viewports: the layouts (1x1, 1x2, 2x2 and MPR's three), which one is selected, showing a
// series in one of them, and keeping the stacks of a multi-viewport layout in step.
import * as cs from "@cornerstonejs/core";
import * as csTools from "@cornerstonejs/tools";
import { ENGINE_ID, MPR_GROUP, S, STACK_GROUP, config, status, view, viewportOf } from "./state.js";
import { prefetch, seriesLoad } from "./loading.js";
import { reportError } from "./messages.js";
import { displayCheck } from "./display.js";
import { noticeShow, overlayUpdate } from "./overlays.js";
import { cineStop } from "./tools.js";
import { toolbarUpdate } from "./interface.js";
import { seriesNavigationUpdate } from "./series-navigation.js";

const { ViewportType, Events } = cs.Enums;
let syncing = false;

export function layoutBuild(layout) {
  const container = document.getElementById("viewports");
  for (const entry of view.viewports) {
    try {
      view.engine.disableElement(entry.id);
    } catch {
      /* already gone */
    }
  }
  for (const group of [STACK_GROUP, MPR_GROUP]) {
    const toolGroup = csTools.ToolGroupManager.getToolGroup(group);
    for (const entry of view.viewports) toolGroup?.removeViewports(ENGINE_ID, entry.id);
  }
  container.replaceChildren();
  container.className = `viewports layout-${layout}`;
  const count = { "1x1": 1, "1x2": 2, "2x2": 4, mpr: 3 }[layout];
  view.viewports = [];
  for (let index = 0; index < count; index += 1) {
    const root = document.createElement("div");
    root.className = "viewport";
    root.dataset.index = String(index);
    const element = document.createElement("div");
    element.className = "element";
    element.oncontextmenu = (event) => event.preventDefault();
    root.append(element);
    for (const corner of ["tl", "tr", "bl", "br"]) {
      const overlay = document.createElement("div");
      overlay.className = `overlay ${corner}`;
      root.append(overlay);
    }
    for (const side of ["left", "right", "top", "bottom"]) {
      const marker = document.createElement("div");
      marker.className = `orientation ${side}`;
      root.append(marker);
    }
    root.addEventListener("pointerdown", () => viewportSelect(index));
    container.append(root);
    view.viewports.push({ id: `viewport-${layout}-${index}`, element, root, seriesId: null });
  }
  status.layout = layout;
  view.selected = 0;
  viewportSelect(0);
}

function viewportSelect(index) {
  view.selected = index;
  view.viewports.forEach((entry, i) => entry.root.classList.toggle("selected", i === index && view.viewports.length > 1));
  seriesNavigationUpdate();
}

export async function seriesShow(series, index = view.selected) {
  const entry = view.viewports[index];
  if (!entry) return;
  if (status.mpr !== "off") await layoutSet(status.layout === "mpr" ? "1x1" : status.layout);
  // The latest request wins: a series asked for while another was loading replaces it.
  entry.requestedSeriesId = series.id;
  const superseded = () => entry.requestedSeriesId !== series.id;
  seriesNavigationUpdate();
  let state;
  try {
    state = await seriesLoad(series);
  } catch (error) {
    if (superseded()) return;
    const viewerError = reportError(error);
    noticeShow(entry, viewerError.message);
    return;
  }
  if (superseded()) return;
  entry.root.querySelector(".notice")?.remove();
  entry.seriesId = series.id;
  document.querySelectorAll(".series-browser button").forEach((button) => {
    button.classList.toggle("active", button.dataset.series === series.id);
  });
  displayCheck(state.colour);
  view.engine.enableElement({ viewportId: entry.id, type: ViewportType.STACK, element: entry.element });
  csTools.ToolGroupManager.getToolGroup(STACK_GROUP).addViewport(entry.id, ENGINE_ID);
  const viewport = view.engine.getViewport(entry.id);
  const middle = 0;
  try {
    // Load the first image on its own, so that a failure to fetch or decode it is reported here;
    // then fetch the rest of the stack while the first is drawn.
    await cs.imageLoader.loadAndCacheImage(state.imageIds[middle]);
    if (superseded()) return;
    prefetch(state.imageIds);
    await viewport.setStack(state.imageIds, middle);
  } catch (error) {
    if (superseded()) return;
    const viewerError = reportError(error, state.imageIds[middle]);
    noticeShow(entry, viewerError.message);
    return;
  }
  viewport.render();
  if (status.firstImageMs === null) status.firstImageMs = performance.now();
  if (!entry.listening) {
    // Once per viewport element, which stays the same when another series is shown in it.
    entry.listening = true;
    entry.element.addEventListener(Events.STACK_NEW_IMAGE, () => {
      overlayUpdate(entry);
      scrollSync(index);
    });
    entry.element.addEventListener(Events.VOI_MODIFIED, () => overlayUpdate(entry));
    entry.element.addEventListener(Events.CAMERA_MODIFIED, () => overlayUpdate(entry));
  }
  overlayUpdate(entry);
  if (state.imageIds.length === 1) noticeShow(entry, S.singleImage);
}

function scrollSync(sourceIndex) {
  if (syncing || view.viewports.length < 2 || status.mpr !== "off") return;
  const source = viewportOf(sourceIndex);
  if (!source?.getImageIds) return;
  const fraction = source.getCurrentImageIdIndex() / Math.max(1, source.getImageIds().length - 1);
  syncing = true;
  try {
    view.viewports.forEach((_entry, index) => {
      const other = viewportOf(index);
      if (index === sourceIndex || !other?.getImageIds || !other.getImageIds().length) return;
      const target = Math.round(fraction * (other.getImageIds().length - 1));
      if (target !== other.getCurrentImageIdIndex()) other.setImageIdIndex(target);
    });
  } finally {
    syncing = false;
  }
}

export async function layoutSet(layout) {
  cineStop();
  status.mpr = "off";
  const shown = view.viewports.map((entry) => entry.seriesId).filter(Boolean);
  layoutBuild(layout);
  const first = shown[0] || config.series[0]?.id;
  for (let index = 0; index < view.viewports.length; index += 1) {
    const seriesId = shown[index] || (index < config.series.length ? config.series[index].id : first);
    const series = config.series.find((s) => s.id === seriesId);
    if (series) await seriesShow(series, index);
  }
  toolbarUpdate();
}
