// What the viewer's modules share: the page's configuration with its translated strings (made on
// the server by apps/viewer/strings.py), the status that window.viewer reports, and the rendering
// engine with its viewports. Shared values that change live on `view`, because an ES module's
// exported bindings cannot be reassigned by the modules that import them.
export const config = JSON.parse(document.getElementById("viewer-config").textContent);
export const S = config.strings;
export const ENGINE_ID = "viewer-engine";
export const STACK_GROUP = "stack-tools";
export const MPR_GROUP = "mpr-tools";

// What the page has done, for the user (messages) and for tests and the benchmark (window.viewer).
export const status = {
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

export const seriesState = new Map(); // series id -> { imageIds, docs, colour, modality }
export const documentsByImageId = new Map(); // image id -> its instance's DICOM JSON

export const view = {
  engine: null,
  webgl: false,
  viewports: [], // { id, element, root, seriesId }
  selected: 0,
  activePrimary: "windowLevel",
  cinePlaying: false,
};

// A translated template's %(name)s placeholders filled in, as Django's gettext leaves them.
export function format(template, values) {
  return template.replace(/%\((\w+)\)s/g, (_m, key) => String(values[key]));
}

export function viewportOf(index = view.selected) {
  const entry = view.viewports[index];
  return entry ? view.engine.getViewport(entry.id) : null;
}
