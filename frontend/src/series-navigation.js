// Changing series without the series browser, which phones have no room for: previous/next
// buttons under the images, and a quick horizontal swipe on the image.
//
// On a phone one finger drags through the stack (StackScroll reads only the vertical movement), two
// pinch and three pan, so a one-finger horizontal movement is free; but a slow one is as likely a
// drag that wandered sideways. A swipe therefore has to be short, fast and mostly horizontal, as
// when leafing through photos: finger to the left for the next series, to the right for the previous.
// It only counts while scrolling is the one-finger tool, since a horizontal drag means something to
// the others (window width, panning, a measurement), and not in MPR, where the series is the volume.
import { S, config, format, status, view, viewportOf } from "./state.js";
import { hideMessage } from "./messages.js";
import { seriesShow } from "./layout.js";
import { button } from "./interface.js";

const SWIPE_MIN_DISTANCE = 60; // CSS pixels
const SWIPE_MAX_DURATION = 300; // milliseconds
const SWIPE_MAX_SLOPE = 0.5; // vertical movement per horizontal movement

function navigatedEntry() {
  return view.viewports[view.selected];
}

// The series the selected viewport was last asked to show, shown or not (a series that fails to
// load must not stop the user stepping past it).
function currentPosition() {
  const entry = navigatedEntry();
  const seriesId = entry?.requestedSeriesId ?? entry?.seriesId;
  return config.series.findIndex((series) => series.id === seriesId);
}

export function seriesStep(delta) {
  const position = currentPosition();
  const target = config.series[position + delta];
  if (position < 0 || !target) return false;
  hideMessage();
  seriesShow(target);
  return true;
}

export function seriesNavigationBuild() {
  const nav = document.getElementById("series-nav");
  if (!nav || config.series.length < 2) return;
  const step = (delta, label, text, key) => {
    const element = button(text, () => seriesStep(delta), key);
    element.setAttribute("aria-label", label);
    return element;
  };
  const label = document.createElement("span");
  label.className = "series-position";
  label.setAttribute("aria-live", "polite");
  nav.append(
    step(-1, S.previousSeries, `‹ ${S.previousSeries}`, "series-previous"),
    label,
    step(1, S.nextSeries, `${S.nextSeries} ›`, "series-next"),
  );
  nav.title = S.swipeHint;
  nav.hidden = false;
  seriesNavigationUpdate();
}

export function seriesNavigationUpdate() {
  const nav = document.getElementById("series-nav");
  if (!nav || nav.hidden) return;
  const position = currentPosition();
  const series = config.series[position];
  nav.querySelector(".series-position").textContent = series
    ? `${format(S.seriesPosition, { position: position + 1, count: config.series.length })} · ${series.number ?? ""} ${series.modality} ${series.description}`
    : "";
  nav.querySelector("[data-action=series-previous]").disabled = position <= 0;
  nav.querySelector("[data-action=series-next]").disabled = position < 0 || position >= config.series.length - 1;
}

// Listens on the viewports' container in the capture phase, before Cornerstone's own touch
// handling, and never prevents it: the vertical part of a swipe may have scrolled the stack a
// little, which is undone before the series changes.
export function swipeBind() {
  const container = document.getElementById("viewports");
  let swipe = null;
  container.addEventListener(
    "touchstart",
    (event) => {
      if (event.touches.length !== 1 || status.mpr !== "off" || view.activePrimary !== "scroll") {
        swipe = null;
        return;
      }
      const [touch] = event.touches;
      swipe = { x: touch.clientX, y: touch.clientY, time: event.timeStamp, imageIndex: viewportOf()?.getCurrentImageIdIndex?.() };
    },
    { capture: true, passive: true },
  );
  container.addEventListener(
    "touchmove",
    (event) => {
      if (event.touches.length !== 1) swipe = null; // a second finger: a pinch, not a swipe
    },
    { capture: true, passive: true },
  );
  container.addEventListener(
    "touchend",
    (event) => {
      const start = swipe;
      swipe = null;
      if (!start || event.touches.length !== 0) return;
      const [touch] = event.changedTouches;
      const dx = touch.clientX - start.x;
      const dy = touch.clientY - start.y;
      const quick = event.timeStamp - start.time <= SWIPE_MAX_DURATION;
      if (!quick || Math.abs(dx) < SWIPE_MIN_DISTANCE || Math.abs(dy) > SWIPE_MAX_SLOPE * Math.abs(dx)) return;
      const viewport = viewportOf();
      if (start.imageIndex != null && viewport?.getCurrentImageIdIndex?.() !== start.imageIndex) {
        viewport.setImageIdIndex(start.imageIndex);
      }
      seriesStep(dx < 0 ? 1 : -1);
    },
    { capture: true, passive: true },
  );
  container.addEventListener("touchcancel", () => (swipe = null), { capture: true, passive: true });
}
