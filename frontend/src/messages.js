// The message box over the viewports, and how a failure becomes a message the user can act on.
import { S, documentsByImageId, format, status } from "./state.js";

export function showMessage(text, kind = "error") {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = false;
  box.dataset.kind = kind;
  status.message = text;
  status.messageKind = kind;
}

export function hideMessage() {
  const box = document.getElementById("message");
  box.hidden = true;
  status.message = "";
  status.messageKind = "";
}

export class ViewerError extends Error {
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

export function reportError(error, imageId) {
  const viewerError = errorText(error, imageId);
  showMessage(viewerError.message, viewerError.kind);
  return viewerError;
}
