// Cornerstone's tools: the two tool groups (stack and MPR) with their mouse and touch bindings, the
// primary (left button, one finger) tool, window presets, camera changes and cine.
import * as cs from "@cornerstonejs/core";
import * as csTools from "@cornerstonejs/tools";
import { MPR_GROUP, S, STACK_GROUP, seriesState, status, view, viewportOf } from "./state.js";
import { tagValue } from "./loading.js";
import { showMessage } from "./messages.js";
import { isPhone } from "./display.js";
import { overlayUpdate } from "./overlays.js";
import { toolbarUpdate } from "./interface.js";

const { MouseBindings, KeyboardBindings } = csTools.Enums;
export const PRESETS = {
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

export function toolsInit() {
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
    if (name === STACK_GROUP && view.webgl) group.setToolEnabled(csTools.ScaleOverlayTool.toolName);
  }
  // Phones: one finger swipes through the stack; two fingers pinch to zoom; three pan.
  primaryToolSet(isPhone() ? "scroll" : "windowLevel");
}

export function primaryToolSet(key) {
  const toolName = PRIMARY_TOOLS[key];
  if (!toolName) return;
  for (const name of [STACK_GROUP, MPR_GROUP]) {
    const group = csTools.ToolGroupManager.getToolGroup(name);
    const previous = PRIMARY_TOOLS[view.activePrimary];
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
  view.activePrimary = key;
  status.primaryTool = key;
  toolbarUpdate();
}

export function presetApply(key) {
  const preset = PRESETS[key];
  const viewport = viewportOf();
  if (!preset || !viewport) return;
  const voiRange = cs.utilities.windowLevel.toLowHighRange(preset.width, preset.center);
  const targets = status.mpr === "off" ? [viewport] : view.viewports.map((_e, i) => viewportOf(i));
  for (const target of targets) {
    target.setProperties({ voiRange });
    target.render();
  }
}

export function cameraChange(change) {
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
  overlayUpdate(view.viewports[view.selected]);
}

export function cineToggle() {
  const entry = view.viewports[view.selected];
  if (!entry || status.mpr !== "off") return;
  if (view.cinePlaying) {
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
  view.cinePlaying = true;
  toolbarUpdate();
}

export function cineStop() {
  if (!view.cinePlaying) return;
  for (const entry of view.viewports) {
    try {
      csTools.utilities.cine.stopClip(entry.element);
    } catch {
      /* not playing here */
    }
  }
  view.cinePlaying = false;
  toolbarUpdate();
}
