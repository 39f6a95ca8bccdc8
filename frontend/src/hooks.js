// window.viewer: read-only views of the page for the browser tests and bench/viewer_bench.py, plus
// image-to-page coordinates for driving the mouse.
import * as cs from "@cornerstonejs/core";
import * as csTools from "@cornerstonejs/tools";
import { status, view, viewportOf } from "./state.js";

function annotationsOf(toolName) {
  return csTools.annotation.state.getAllAnnotations().filter((item) => item.metadata.toolName === toolName);
}

export function hooksInstall() {
  window.viewer = Object.freeze({
    status: () => ({ ...status }),
    voi: (index = view.selected) => viewportOf(index)?.getProperties().voiRange ?? null,
    camera: (index = view.selected) => {
      const presentation = viewportOf(index)?.getViewPresentation?.() ?? {};
      return { rotation: presentation.rotation, flipHorizontal: presentation.flipHorizontal, zoom: viewportOf(index)?.getZoom?.() };
    },
    viewportKinds: () => view.viewports.map((entry) => view.engine.getViewport(entry.id)?.type ?? null),
    imageIndex: (index = view.selected) => viewportOf(index)?.getCurrentImageIdIndex?.() ?? null,
    // The page position of the centre of pixel (column, row) of the shown image, for the mouse.
    // (Cornerstone's image coordinates put pixel centres at +0.5.)
    pagePoint: (column, row, index = view.selected) => {
      const viewport = viewportOf(index);
      const world = cs.utilities.imageToWorldCoords(viewport.getCurrentImageId(), [column + 0.5, row + 0.5]);
      const [x, y] = viewport.worldToCanvas(world);
      const rect = view.viewports[index].element.getBoundingClientRect();
      return { x: rect.left + x, y: rect.top + y };
    },
    measurements: (toolName) =>
      annotationsOf(toolName).map((item) => {
        const stats = Object.values(item.data.cachedStats || {})[0] || {};
        return { ...stats, points: item.data.handles.points };
      }),
  });
}
