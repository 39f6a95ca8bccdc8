// Multiplanar reconstruction: the selected CT or MR series as a volume in three orthogonal
// viewports (WebGL only).
import * as cs from "@cornerstonejs/core";
import * as csTools from "@cornerstonejs/tools";
import { ENGINE_ID, MPR_GROUP, S, seriesState, status, view } from "./state.js";
import { reportError, showMessage } from "./messages.js";
import { overlayUpdate } from "./overlays.js";
import { layoutBuild } from "./layout.js";
import { cineStop } from "./tools.js";
import { toolbarUpdate } from "./interface.js";

const { ViewportType, OrientationAxis, Events } = cs.Enums;

export async function mprEnter() {
  const entry = view.viewports[view.selected];
  const state = entry?.seriesId ? seriesState.get(entry.seriesId) : null;
  if (!view.webgl) {
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
  view.viewports.forEach((item) => (item.seriesId = seriesId));
  const orientations = [OrientationAxis.AXIAL, OrientationAxis.SAGITTAL, OrientationAxis.CORONAL];
  view.engine.setViewports(
    view.viewports.map((item, index) => ({
      viewportId: item.id,
      type: ViewportType.ORTHOGRAPHIC,
      element: item.element,
      defaultOptions: { orientation: orientations[index], background: [0, 0, 0] },
    })),
  );
  const toolGroup = csTools.ToolGroupManager.getToolGroup(MPR_GROUP);
  view.viewports.forEach((item) => toolGroup.addViewport(item.id, ENGINE_ID));
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
    await cs.setVolumesForViewports(view.engine, [{ volumeId }], view.viewports.map((item) => item.id));
    await loaded;
    view.engine.render();
    view.viewports.forEach((item) => {
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
