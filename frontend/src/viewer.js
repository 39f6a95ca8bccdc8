// The diagnostic viewer: Cornerstone3D over the archive's WADO-RS, through the viewer's own
// session-authenticated endpoints. Nothing is written to browser storage; images stay in memory.
import * as cs from "@cornerstonejs/core";
import * as csTools from "@cornerstonejs/tools";
import dicomImageLoader from "@cornerstonejs/dicom-image-loader";

const config = JSON.parse(document.getElementById("viewer-config").textContent);
const S = config.strings;
const { ViewportType, OrientationAxis, Events } = cs.Enums;
const { MouseBindings, KeyboardBindings } = csTools.Enums;
const ENGINE_ID = "viewer-engine";
const STACK_GROUP = "stack-tools";
const MPR_GROUP = "mpr-tools";
const PRESETS = {
  lung: { width: 1500, center: -600 },
  mediastinum: { width: 350, center: 50 },
  bone: { width: 2000, center: 500 },
  brain: { width: 80, center: 40 },
  abdomen: { width: 400, center: 50 },
};
const MEASURE_TOOLS = {
  length: csTools.LengthTool.toolName,
  angle: csTools.AngleTool.toolName,
  ellipse: csTools.EllipticalROITool.toolName,
  rectangle: csTools.RectangleROITool.toolName,
  probe: csTools.ProbeTool.toolName,
};
const PRIMARY_TOOLS = {
  windowLevel: csTools.WindowLevelTool.toolName,
  pan: csTools.PanTool.toolName,
  zoom: csTools.ZoomTool.toolName,
  scroll: csTools.StackScrollTool.toolName,
  ...MEASURE_TOOLS,
};

// What the page has done, for the user (messages) and for tests and the benchmark (window.viewer).
const status = {
  firstImageMs: null,
  stackLoadedMs: null,
  loaded: 0,
  total: 0,
  failed: 0,
  message: "",
  messageKind: "",
  mode: config.mode,
  primaryTool: "",
  layout: "1x1",
  mpr: "off",
  rendering: "",
  megapixels: 0,
  displayWarning: false,
};
const seriesState = new Map(); // series id -> { imageIds, docs, colour, error }
const documentsByImageId = new Map();
let engine;
let webgl = false;
let viewports = []; // { id, element, root, seriesId }
let selected = 0;
let activePrimary = "windowLevel";
let syncing = false;
let cinePlaying = false;

function format(template, values) {
  return template.replace(/%\((\w+)\)s/g, (_m, key) => String(values[key]));
}

function showMessage(text, kind = "error") {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = false;
  box.dataset.kind = kind;
  status.message = text;
  status.messageKind = kind;
}

function hideMessage() {
  const box = document.getElementById("message");
  box.hidden = true;
  status.message = "";
  status.messageKind = "";
}

class ViewerError extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
  }
}

function httpStatus(error) {
  if (!error) return 0;
  return error.status ?? error.request?.status ?? error.xhr?.status ?? 0;
}

function errorText(error, imageId) {
  if (error instanceof ViewerError) return error;
  const code = httpStatus(error);
  if (code === 401 || code === 403 || code === 404) return new ViewerError(S.sessionExpired, "expired");
  if (code === 413) return new ViewerError(S.loadFailed, "tooLarge");
  const doc = imageId ? documentsByImageId.get(imageId) : null;
  const syntax = doc?.["00020010"]?.Value?.[0];
  if (code === 0 || code === 200) {
    return new ViewerError(format(S.decodeFailed, { syntax: syntax || "?" }), "decode");
  }
  return new ViewerError(S.loadFailed, "load");
}

function reportError(error, imageId) {
  const viewerError = errorText(error, imageId);
  showMessage(viewerError.message, viewerError.kind);
  return viewerError;
}

// --- Data ---------------------------------------------------------------------------------------

function tagValue(doc, tag) {
  return doc?.[tag]?.Value?.[0];
}

function personName(doc, tag) {
  const value = tagValue(doc, tag);
  if (!value) return "";
  return value.Ideographic || value.Alphabetic || "";
}

const metadataRequests = new Map(); // series id -> promise of its DICOM JSON documents

async function metadataRequest(series) {
  const response = await fetch(series.metadataUrl, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401 || response.status === 404) throw new ViewerError(S.sessionExpired, "expired");
  if (!response.ok) throw new ViewerError(S.seriesFailed, "load");
  return response.json();
}

// The series' metadata, fetched once. Called for the first series as soon as the script runs, so
// that the request overlaps Cornerstone's start-up instead of following it.
function metadataFetch(series) {
  let request = metadataRequests.get(series.id);
  if (!request) {
    request = metadataRequest(series);
    request.catch(() => {}); // reported by seriesLoad, which awaits it
    metadataRequests.set(series.id, request);
  }
  return request;
}

async function seriesLoad(series) {
  const known = seriesState.get(series.id);
  if (known) return known;
  if (series.largestBytes > config.maxInstanceBytes) {
    const mb = (bytes) => Math.round(bytes / 1048576);
    throw new ViewerError(format(S.tooLarge, { size: mb(series.largestBytes), limit: mb(config.maxInstanceBytes) }), "tooLarge");
  }
  let docs;
  try {
    docs = await metadataFetch(series);
  } finally {
    metadataRequests.delete(series.id); // a failed request is tried again next time; a good one is kept in seriesState
  }
  const imageIds = [];
  let colour = false;
  for (const doc of docs) {
    const bulk = doc["7FE00010"]?.BulkDataURI;
    if (!bulk) continue;
    const frames = Number(tagValue(doc, "00280008") || 1);
    const photometric = String(tagValue(doc, "00280004") || "");
    if (!photometric.startsWith("MONOCHROME")) colour = true;
    for (let frame = 1; frame <= frames; frame += 1) {
      // The viewer's single-part frame URL (apps/viewer/views.py instance_frame), not WADO-RS's
      // multipart frames/: the loader then has no boundary to search for in every image. (The
      // loader finds the frame number after "/frames/", so the URL ends that way.)
      const imageId = `wadors:${window.location.origin}${bulk}/raw/frames/${frame}`;
      dicomImageLoader.wadors.metaDataManager.add(imageId, doc);
      documentsByImageId.set(imageId, doc);
      imageIds.push(imageId);
    }
  }
  if (!imageIds.length) throw new ViewerError(S.noImages, "empty");
  const state = { imageIds, docs, colour, modality: String(tagValue(docs[0], "00080060") || "") };
  seriesState.set(series.id, state);
  return state;
}

function prefetch(imageIds) {
  status.total += imageIds.length;
  const started = performance.now();
  let remaining = imageIds.length;
  const done = () => {
    remaining -= 1;
    if (remaining === 0 && status.stackLoadedMs === null) status.stackLoadedMs = performance.now();
    status.stackLoadedSince = performance.now() - started;
  };
  for (const imageId of imageIds) {
    cs.imageLoader
      .loadAndCacheImage(imageId)
      .then(() => {
        status.loaded += 1;
        done();
      })
      .catch((error) => {
        status.failed += 1;
        reportError(error, imageId);
        done();
      });
  }
}

// --- Display check ------------------------------------------------------------------------------

function displayCheck(colour) {
  const ratio = window.devicePixelRatio || 1;
  // Physical pixels: the CSS screen size times the device pixel ratio in each direction.
  const megapixels = (window.screen.width * ratio * window.screen.height * ratio) / 1e6;
  status.megapixels = Math.round(megapixels * 100) / 100;
  const warning = document.getElementById("display-warning");
  if (!warning) return;
  const required = colour ? 3 : 2;
  if (megapixels < required) {
    warning.textContent = format(S.displayWarning, { megapixels: megapixels.toFixed(1), required });
    warning.hidden = false;
    status.displayWarning = true;
  }
}

// --- Viewports ----------------------------------------------------------------------------------

function viewportOf(index = selected) {
  const entry = viewports[index];
  return entry ? engine.getViewport(entry.id) : null;
}

function layoutBuild(layout) {
  const container = document.getElementById("viewports");
  for (const entry of viewports) {
    try {
      engine.disableElement(entry.id);
    } catch {
      /* already gone */
    }
  }
  for (const group of [STACK_GROUP, MPR_GROUP]) {
    const toolGroup = csTools.ToolGroupManager.getToolGroup(group);
    for (const entry of viewports) toolGroup?.removeViewports(ENGINE_ID, entry.id);
  }
  container.replaceChildren();
  container.className = `viewports layout-${layout}`;
  const count = { "1x1": 1, "1x2": 2, "2x2": 4, mpr: 3 }[layout];
  viewports = [];
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
    viewports.push({ id: `viewport-${layout}-${index}`, element, root, seriesId: null });
  }
  status.layout = layout;
  selected = 0;
  viewportSelect(0);
}

function viewportSelect(index) {
  selected = index;
  viewports.forEach((entry, i) => entry.root.classList.toggle("selected", i === index && viewports.length > 1));
}

function overlayUpdate(entry) {
  const viewport = engine.getViewport(entry.id);
  if (!viewport) return;
  const imageId = viewport.getCurrentImageId?.();
  const doc = imageId ? documentsByImageId.get(imageId) : null;
  const [tl, tr, bl, br] = entry.root.querySelectorAll(".overlay");
  if (doc) {
    tl.textContent = [
      personName(doc, "00100010"),
      tagValue(doc, "00100020") || "",
      [tagValue(doc, "00100040"), tagValue(doc, "00101010")].filter(Boolean).join(" "),
    ].join("\n");
    tr.textContent = [
      tagValue(doc, "00080080") || "",
      tagValue(doc, "00081030") || "",
      tagValue(doc, "00080020") || "",
      `${tagValue(doc, "00080060") || ""} ${tagValue(doc, "0008103E") || ""}`,
    ].join("\n");
    const technique = [];
    if (tagValue(doc, "00180060")) technique.push(`${tagValue(doc, "00180060")} kV`);
    if (tagValue(doc, "00181151")) technique.push(`${tagValue(doc, "00181151")} mA`);
    if (tagValue(doc, "00180050")) technique.push(`${S.thickness} ${tagValue(doc, "00180050")} mm`);
    bl.textContent = technique.join("  ");
  }
  const properties = viewport.getProperties?.() || {};
  const voi = properties.voiRange;
  const lines = [];
  if (viewport.getImageIds && entry.seriesId) {
    lines.push(`${S.slice} ${viewport.getCurrentImageIdIndex() + 1}/${viewport.getImageIds().length}`);
  }
  if (voi) {
    // DICOM's linear window (PS3.3 C.11.2.1.2), as Cornerstone maps it to a range.
    const { windowWidth, windowCenter } = cs.utilities.windowLevel.toWindowLevel(voi.lower, voi.upper);
    lines.push(`W ${Math.round(windowWidth)} L ${Math.round(windowCenter)}`);
  }
  const zoom = viewport.getZoom?.();
  if (zoom) lines.push(`×${zoom.toFixed(2)}`);
  br.textContent = lines.join("\n");
  orientationUpdate(entry, viewport);
}

function orientationLetter(vector) {
  const letters = [
    ["L", "R"],
    ["P", "A"],
    ["H", "F"],
  ];
  const order = [0, 1, 2].sort((a, b) => Math.abs(vector[b]) - Math.abs(vector[a]));
  let text = "";
  for (const axis of order) {
    if (Math.abs(vector[axis]) < 0.3 * Math.abs(vector[order[0]]) || text.length >= 2) break;
    text += letters[axis][vector[axis] > 0 ? 0 : 1];
  }
  return text;
}

function orientationUpdate(entry, viewport) {
  const { clientWidth: width, clientHeight: height } = entry.element;
  if (!width || !height || !viewport.canvasToWorld) return;
  const a = viewport.canvasToWorld([0, height / 2]);
  const b = viewport.canvasToWorld([width, height / 2]);
  const c = viewport.canvasToWorld([width / 2, 0]);
  const d = viewport.canvasToWorld([width / 2, height]);
  const right = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
  const down = [d[0] - c[0], d[1] - c[1], d[2] - c[2]];
  const marker = (side) => entry.root.querySelector(`.orientation.${side}`);
  marker("right").textContent = orientationLetter(right);
  marker("left").textContent = orientationLetter(right.map((v) => -v));
  marker("bottom").textContent = orientationLetter(down);
  marker("top").textContent = orientationLetter(down.map((v) => -v));
}

function noticeShow(entry, text) {
  let notice = entry.root.querySelector(".notice");
  if (!notice) {
    notice = document.createElement("div");
    notice.className = "notice";
    entry.root.append(notice);
  }
  notice.textContent = text;
}

async function seriesShow(series, index = selected) {
  const entry = viewports[index];
  if (!entry) return;
  if (status.mpr !== "off") await layoutSet(status.layout === "mpr" ? "1x1" : status.layout);
  let state;
  try {
    state = await seriesLoad(series);
  } catch (error) {
    const viewerError = reportError(error);
    noticeShow(entry, viewerError.message);
    return;
  }
  entry.root.querySelector(".notice")?.remove();
  entry.seriesId = series.id;
  document.querySelectorAll(".series-browser button").forEach((button) => {
    button.classList.toggle("active", button.dataset.series === series.id);
  });
  displayCheck(state.colour);
  engine.enableElement({ viewportId: entry.id, type: ViewportType.STACK, element: entry.element });
  csTools.ToolGroupManager.getToolGroup(STACK_GROUP).addViewport(entry.id, ENGINE_ID);
  const viewport = engine.getViewport(entry.id);
  const middle = 0;
  try {
    // Load the first image on its own, so that a failure to fetch or decode it is reported here;
    // then fetch the rest of the stack while the first is drawn.
    await cs.imageLoader.loadAndCacheImage(state.imageIds[middle]);
    prefetch(state.imageIds);
    await viewport.setStack(state.imageIds, middle);
  } catch (error) {
    const viewerError = reportError(error, state.imageIds[middle]);
    noticeShow(entry, viewerError.message);
    return;
  }
  viewport.render();
  if (status.firstImageMs === null) status.firstImageMs = performance.now();
  entry.element.addEventListener(Events.STACK_NEW_IMAGE, () => {
    overlayUpdate(entry);
    scrollSync(index);
  });
  entry.element.addEventListener(Events.VOI_MODIFIED, () => overlayUpdate(entry));
  entry.element.addEventListener(Events.CAMERA_MODIFIED, () => overlayUpdate(entry));
  overlayUpdate(entry);
  if (state.imageIds.length === 1) noticeShow(entry, S.singleImage);
}

function scrollSync(sourceIndex) {
  if (syncing || viewports.length < 2 || status.mpr !== "off") return;
  const source = viewportOf(sourceIndex);
  if (!source?.getImageIds) return;
  const fraction = source.getCurrentImageIdIndex() / Math.max(1, source.getImageIds().length - 1);
  syncing = true;
  try {
    viewports.forEach((_entry, index) => {
      const other = viewportOf(index);
      if (index === sourceIndex || !other?.getImageIds || !other.getImageIds().length) return;
      const target = Math.round(fraction * (other.getImageIds().length - 1));
      if (target !== other.getCurrentImageIdIndex()) other.setImageIdIndex(target);
    });
  } finally {
    syncing = false;
  }
}

async function layoutSet(layout) {
  cineStop();
  status.mpr = "off";
  const shown = viewports.map((entry) => entry.seriesId).filter(Boolean);
  layoutBuild(layout);
  const first = shown[0] || config.series[0]?.id;
  for (let index = 0; index < viewports.length; index += 1) {
    const seriesId = shown[index] || (index < config.series.length ? config.series[index].id : first);
    const series = config.series.find((s) => s.id === seriesId);
    if (series) await seriesShow(series, index);
  }
  toolbarUpdate();
}

// --- MPR ----------------------------------------------------------------------------------------

async function mprEnter() {
  const entry = viewports[selected];
  const state = entry?.seriesId ? seriesState.get(entry.seriesId) : null;
  if (!webgl) {
    showMessage(S.mprNeedsWebgl, "mpr");
    return;
  }
  if (!state || state.imageIds.length < 3 || !["CT", "MR"].includes(state.modality) || state.colour) {
    showMessage(S.mprUnavailable, "mpr");
    return;
  }
  cineStop();
  const seriesId = entry.seriesId;
  status.mpr = "loading";
  layoutBuild("mpr");
  viewports.forEach((item) => (item.seriesId = seriesId));
  const orientations = [OrientationAxis.AXIAL, OrientationAxis.SAGITTAL, OrientationAxis.CORONAL];
  engine.setViewports(
    viewports.map((item, index) => ({
      viewportId: item.id,
      type: ViewportType.ORTHOGRAPHIC,
      element: item.element,
      defaultOptions: { orientation: orientations[index], background: [0, 0, 0] },
    })),
  );
  const toolGroup = csTools.ToolGroupManager.getToolGroup(MPR_GROUP);
  viewports.forEach((item) => toolGroup.addViewport(item.id, ENGINE_ID));
  const volumeId = `cornerstoneStreamingImageVolume:${seriesId}`;
  try {
    let volume = cs.cache.getVolume(volumeId);
    if (!volume) {
      volume = await cs.volumeLoader.createAndCacheVolume(volumeId, { imageIds: state.imageIds });
    }
    const loaded = new Promise((resolve) => {
      if (volume.loadStatus?.loaded) resolve();
      else volume.load(() => resolve());
    });
    await cs.setVolumesForViewports(engine, [{ volumeId }], viewports.map((item) => item.id));
    await loaded;
    engine.render();
    viewports.forEach((item) => {
      item.element.addEventListener(Events.CAMERA_MODIFIED, () => overlayUpdate(item));
      overlayUpdate(item);
    });
    status.mpr = "ready";
    status.layout = "mpr";
  } catch (error) {
    status.mpr = "failed";
    reportError(error);
  }
  toolbarUpdate();
}

// --- Tools --------------------------------------------------------------------------------------

function toolsInit() {
  csTools.init();
  const all = [
    csTools.WindowLevelTool,
    csTools.PanTool,
    csTools.ZoomTool,
    csTools.StackScrollTool,
    csTools.LengthTool,
    csTools.AngleTool,
    csTools.EllipticalROITool,
    csTools.RectangleROITool,
    csTools.ProbeTool,
    csTools.ScaleOverlayTool,
  ];
  for (const tool of all) csTools.addTool(tool);
  for (const name of [STACK_GROUP, MPR_GROUP]) {
    const group = csTools.ToolGroupManager.createToolGroup(name);
    for (const tool of all) group.addTool(tool.toolName);
    group.setToolActive(csTools.StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    group.setToolActive(csTools.PanTool.toolName, {
      bindings: [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 }],
    });
    group.setToolActive(csTools.ZoomTool.toolName, {
      bindings: [
        { mouseButton: MouseBindings.Secondary },
        { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Ctrl },
        { numTouchPoints: 2 },
      ],
    });
    if (name === STACK_GROUP && webgl) group.setToolEnabled(csTools.ScaleOverlayTool.toolName);
  }
  // Phones: one finger swipes through the stack; two fingers pinch to zoom; three pan.
  primaryToolSet(isPhone() ? "scroll" : "windowLevel");
}

function isPhone() {
  return window.matchMedia("(pointer: coarse)").matches && Math.min(window.innerWidth, window.innerHeight) < 700;
}

function primaryToolSet(key) {
  const toolName = PRIMARY_TOOLS[key];
  if (!toolName) return;
  for (const name of [STACK_GROUP, MPR_GROUP]) {
    const group = csTools.ToolGroupManager.getToolGroup(name);
    const previous = PRIMARY_TOOLS[activePrimary];
    if (previous && previous !== toolName) {
      if (previous === csTools.StackScrollTool.toolName) {
        group.setToolActive(previous, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
      } else if (previous === csTools.PanTool.toolName) {
        group.setToolActive(previous, { bindings: [{ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 }] });
      } else if (previous === csTools.ZoomTool.toolName) {
        group.setToolActive(previous, {
          bindings: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }],
        });
      } else if (Object.values(MEASURE_TOOLS).includes(previous)) {
        group.setToolPassive(previous);
      } else {
        group.setToolDisabled(previous);
      }
    }
    const bindings = [{ mouseButton: MouseBindings.Primary }];
    if (toolName === csTools.StackScrollTool.toolName) bindings.push({ mouseButton: MouseBindings.Wheel });
    if (toolName === csTools.ZoomTool.toolName) bindings.push({ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 });
    if (toolName === csTools.PanTool.toolName) bindings.push({ mouseButton: MouseBindings.Auxiliary }, { numTouchPoints: 3 });
    group.setToolActive(toolName, { bindings });
  }
  activePrimary = key;
  status.primaryTool = key;
  toolbarUpdate();
}

function presetApply(key) {
  const preset = PRESETS[key];
  const viewport = viewportOf();
  if (!preset || !viewport) return;
  const voiRange = cs.utilities.windowLevel.toLowHighRange(preset.width, preset.center);
  const targets = status.mpr === "off" ? [viewport] : viewports.map((_e, i) => viewportOf(i));
  for (const target of targets) {
    target.setProperties({ voiRange });
    target.render();
  }
}

function cameraChange(change) {
  const viewport = viewportOf();
  if (!viewport) return;
  if (change === "fit" || change === "reset") {
    if (change === "reset") {
      viewport.resetProperties?.();
      if (viewport.setViewPresentation) viewport.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
    }
    viewport.resetCamera();
  } else if (change === "rotate") {
    const rotation = viewport.getViewPresentation?.().rotation ?? 0;
    viewport.setViewPresentation({ rotation: (rotation + 90) % 360 });
  } else if (change === "flipH") {
    viewport.flip({ flipHorizontal: true });
  } else if (change === "flipV") {
    viewport.flip({ flipVertical: true });
  } else if (change === "invert") {
    const { invert } = viewport.getProperties();
    viewport.setProperties({ invert: !invert });
  }
  viewport.render();
  overlayUpdate(viewports[selected]);
}

function cineToggle() {
  const entry = viewports[selected];
  if (!entry || status.mpr !== "off") return;
  if (cinePlaying) {
    cineStop();
    return;
  }
  const state = seriesState.get(entry.seriesId);
  if (!state || state.imageIds.length < 2) {
    showMessage(S.singleImage, "info");
    return;
  }
  const frameTime = Number(tagValue(state.docs[0], "00181063") || 0);
  const framesPerSecond = frameTime > 0 ? Math.min(60, 1000 / frameTime) : 15;
  csTools.utilities.cine.playClip(entry.element, { framesPerSecond, loop: true });
  cinePlaying = true;
  toolbarUpdate();
}

function cineStop() {
  if (!cinePlaying) return;
  for (const entry of viewports) {
    try {
      csTools.utilities.cine.stopClip(entry.element);
    } catch {
      /* not playing here */
    }
  }
  cinePlaying = false;
  toolbarUpdate();
}

// --- Interface ----------------------------------------------------------------------------------

function button(label, action, key) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.dataset.action = key;
  element.addEventListener("click", action);
  return element;
}

function toolbarBuild() {
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
  const help = button("?", () => showMessage(S.shortcutsHelp, "info"), "help");
  help.title = S.shortcuts;
  bar.append(help);
}

function toolbarUpdate() {
  document.querySelectorAll("#toolbar button").forEach((element) => {
    const action = element.dataset.action;
    const active =
      action === `tool-${activePrimary}` ||
      action === `layout-${status.layout}` ||
      (action === "mpr" && status.mpr === "ready") ||
      (action === "cine" && cinePlaying);
    element.classList.toggle("active", active);
  });
}

function seriesBrowserBuild() {
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

function keyboardBind() {
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

// --- Test and benchmark hooks (read-only views of the page, plus coordinates for the mouse) ------

function annotationsOf(toolName) {
  return csTools.annotation.state.getAllAnnotations().filter((item) => item.metadata.toolName === toolName);
}

window.viewer = Object.freeze({
  status: () => ({ ...status }),
  voi: (index = selected) => viewportOf(index)?.getProperties().voiRange ?? null,
  camera: (index = selected) => {
    const presentation = viewportOf(index)?.getViewPresentation?.() ?? {};
    return { rotation: presentation.rotation, flipHorizontal: presentation.flipHorizontal, zoom: viewportOf(index)?.getZoom?.() };
  },
  viewportKinds: () => viewports.map((entry) => engine.getViewport(entry.id)?.type ?? null),
  imageIndex: (index = selected) => viewportOf(index)?.getCurrentImageIdIndex?.() ?? null,
  // The page position of the centre of pixel (column, row) of the shown image, for the mouse.
  // (Cornerstone's image coordinates put pixel centres at +0.5.)
  pagePoint: (column, row, index = selected) => {
    const viewport = viewportOf(index);
    const world = cs.utilities.imageToWorldCoords(viewport.getCurrentImageId(), [column + 0.5, row + 0.5]);
    const [x, y] = viewport.worldToCanvas(world);
    const rect = viewports[index].element.getBoundingClientRect();
    return { x: rect.left + x, y: rect.top + y };
  },
  measurements: (toolName) =>
    annotationsOf(toolName).map((item) => {
      const stats = Object.values(item.data.cachedStats || {})[0] || {};
      return { ...stats, points: item.data.handles.points };
    }),
});

// --- Start --------------------------------------------------------------------------------------

function webglAvailable() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch {
    return false;
  }
}

// The decoders run in module workers. A worker's CSP is the one its script is served with, and the
// Emscripten-built codecs generate functions at run time (embind), which the site's policy forbids.
// So each worker starts from the viewer's decode-worker.js, served with a policy of its own that
// allows that inside the worker only, and which imports the bundled decoder from our static files.
function decodeWorkersRegister(maxWorkerInstances) {
  cs.getWebWorkerManager().registerWorker(
    "dicomImageLoader",
    () => new Worker(config.decodeWorkerUrl, { type: "module" }),
    { maxWorkerInstances, overwrite: true },
  );
}

async function start() {
  webgl = webglAvailable();
  await cs.init();
  if (!webgl) cs.setUseCPURendering(true);
  status.rendering = webgl ? "webgl" : "cpu";
  cs.volumeLoader.registerVolumeLoader("cornerstoneStreamingImageVolume", cs.cornerstoneStreamingImageVolumeLoader);
  const maxWebWorkers = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
  dicomImageLoader.init({ maxWebWorkers });
  decodeWorkersRegister(maxWebWorkers);
  toolsInit();
  engine = new cs.RenderingEngine(ENGINE_ID);
  toolbarBuild();
  seriesBrowserBuild();
  keyboardBind();
  displayCheck(false);
  window.addEventListener("resize", () => engine.resize(true, true));
  layoutBuild("1x1");
  toolbarUpdate();
  if (!config.series.length) {
    showMessage(S.noImages, "empty");
    return;
  }
  await seriesShow(config.series[0], 0);
}

if (config.series.length && config.series[0].largestBytes <= config.maxInstanceBytes) metadataFetch(config.series[0]);
start().catch((error) => reportError(error));
