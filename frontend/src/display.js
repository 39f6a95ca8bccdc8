// The screen the viewer runs on: whether it is fit for diagnosis, and whether it is a phone.
import { S, format, status } from "./state.js";

// Physical pixels are the CSS screen size times the device pixel ratio in each direction; in doctor
// mode a screen below 2 MP (grayscale) or 3 MP (colour series) gets a persistent warning.
export function displayCheck(colour) {
  const ratio = window.devicePixelRatio || 1;
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

export function isPhone() {
  return window.matchMedia("(pointer: coarse)").matches && Math.min(window.innerWidth, window.innerHeight) < 700;
}
