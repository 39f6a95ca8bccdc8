// What is drawn over an image: patient and study text, slice number, window, zoom, the
// orientation letters at the edges, and a notice when the series cannot be shown.
import * as cs from "@cornerstonejs/core";
import { S, documentsByImageId, view } from "./state.js";
import { personName, tagValue } from "./loading.js";

export function overlayUpdate(entry) {
  const viewport = view.engine.getViewport(entry.id);
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

export function noticeShow(entry, text) {
  let notice = entry.root.querySelector(".notice");
  if (!notice) {
    notice = document.createElement("div");
    notice.className = "notice";
    entry.root.append(notice);
  }
  notice.textContent = text;
}
