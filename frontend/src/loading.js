// Series metadata and image ids: the series' DICOM JSON is fetched once, each frame gets an image
// id on the viewer's single-part frame URL, and a shown stack is fetched in full in the background.
import * as cs from "@cornerstonejs/core";
import dicomImageLoader from "@cornerstonejs/dicom-image-loader";
import { S, config, documentsByImageId, format, seriesState, status } from "./state.js";
import { ViewerError, reportError } from "./messages.js";

export function tagValue(doc, tag) {
  return doc?.[tag]?.Value?.[0];
}

const CJK = /[\u3400-\u9fff\uf900-\ufaff]/;

// A DICOM person name as people write it: the ideographic group when there is one (张^三 → 张三),
// else the alphabetic one with its components spaced (Zhang^San → Zhang San).
export function personName(doc, tag) {
  const value = tagValue(doc, tag);
  if (!value) return "";
  const chosen = value.Ideographic || value.Alphabetic || "";
  const parts = chosen.split("^").map((part) => part.trim()).filter(Boolean);
  return parts.join(parts.some((part) => CJK.test(part)) ? "" : " ");
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
export function metadataFetch(series) {
  let request = metadataRequests.get(series.id);
  if (!request) {
    request = metadataRequest(series);
    request.catch(() => {}); // reported by seriesLoad, which awaits it
    metadataRequests.set(series.id, request);
  }
  return request;
}

export async function seriesLoad(series) {
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

export function prefetch(imageIds) {
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
