// The diagnostic viewer: Cornerstone3D over the archive's WADO-RS, through the viewer's own
// session-authenticated endpoints. Nothing is written to browser storage; images stay in memory.
//
// The entry point: starts Cornerstone, builds the page and shows the first series. The modules:
// state (configuration, strings, status), messages, display (screen check), loading (metadata and
// image ids), overlays, tools (tool groups and bindings), layout (viewports, showing a series), mpr,
// interface (toolbar, series browser, keyboard), series-navigation (previous/next buttons and the
// swipe that change series on a phone), hooks (window.viewer).
import * as cs from "@cornerstonejs/core";
import dicomImageLoader from "@cornerstonejs/dicom-image-loader";
import { ENGINE_ID, S, config, status, view } from "./state.js";
import { reportError, showMessage } from "./messages.js";
import { displayCheck } from "./display.js";
import { metadataFetch } from "./loading.js";
import { toolsInit } from "./tools.js";
import { layoutBuild, seriesShow } from "./layout.js";
import { keyboardBind, reportToggleBind, seriesBrowserBuild, toolbarBuild, toolbarUpdate } from "./interface.js";
import { seriesNavigationBuild, swipeBind } from "./series-navigation.js";
import { hooksInstall } from "./hooks.js";

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
  view.webgl = webglAvailable();
  await cs.init();
  if (!view.webgl) cs.setUseCPURendering(true);
  status.rendering = view.webgl ? "webgl" : "cpu";
  cs.volumeLoader.registerVolumeLoader("cornerstoneStreamingImageVolume", cs.cornerstoneStreamingImageVolumeLoader);
  const maxWebWorkers = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
  dicomImageLoader.init({ maxWebWorkers });
  decodeWorkersRegister(maxWebWorkers);
  toolsInit();
  view.engine = new cs.RenderingEngine(ENGINE_ID);
  toolbarBuild();
  seriesBrowserBuild();
  seriesNavigationBuild();
  swipeBind();
  keyboardBind();
  reportToggleBind();
  displayCheck(false);
  window.addEventListener("resize", () => view.engine.resize(true, true));
  layoutBuild("1x1");
  toolbarUpdate();
  if (!config.series.length) {
    showMessage(S.noImages, "empty");
    return;
  }
  await seriesShow(config.series[0], 0);
}

hooksInstall();
if (config.series.length && config.series[0].largestBytes <= config.maxInstanceBytes) metadataFetch(config.series[0]);
start().catch((error) => reportError(error));
