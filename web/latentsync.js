// LatentSync nodes: show what ran (detector, faces found, frames passed through, silent or missing audio) as a
// badge kept in the node's properties (so a reload or a cached run keeps it), preview written videos on the legacy
// frontend, give Load Audio core's upload button and player, put Load Video's upload button under its file list,
// and point to the model files. Saved workflows keep loading: widget values are mapped by position, and the one
// widget moved (Load Video's upload button) is mapped from either order.
import { app } from "../../scripts/app.js";

const EXTENSION = "latentsync.nodes";
// Where the model files go comes from the loader's description (built from latentsync/model_files.py, the one table
// of model files), so this file never repeats the layout.
const MODEL_FILES_HEADING = "Model files (ComfyUI/models/...):";
let modelHelp = "";
const HF_PAGE = "https://huggingface.co/ByteDance/LatentSync-1.6";

function isLegacyFrontend() {
  return typeof window.__COMFYUI_FRONTEND_VERSION__ === "undefined";
}

function faceSummary(report) {
  // Most important first: the badge is cut to the node's width.
  if (!report) return null;
  const missing = report.missing_count || 0;
  let text = `face in ${report.faces_found}/${report.frames} frames`;
  if (missing) {
    const shown = (report.missing_frames || []).slice(0, 8).join(", ");
    text += ` · passed through: ${shown}${missing > 8 ? ", ..." : ""}`;
  }
  if ((report.cuts || []).length) text += ` · cuts at ${report.cuts.slice(0, 5).join(", ")}`;
  const version = report.detector_version || "";
  text += ` · ${version.startsWith(report.detector) ? version : `${report.detector} ${version}`.trim()}`;
  return { text, warn: missing > 0 };
}

const BADGE_PROPERTY = "latentsync_badge";

function badgeFromMessage(message) {
  // Face Align Crop: its report; other nodes: a {text, warn} badge, or a plain text line.
  const faces = message?.latentsync_faces?.[0];
  if (faces) return faceSummary(faces);
  const badge = message?.latentsync_badge?.[0];
  if (badge?.text) return { text: String(badge.text), warn: !!badge.warn };
  const summary = message?.text?.[0];
  if (summary) return { text: String(summary), warn: /passed through/.test(summary) };
  return null;
}

function drawBadge(node, ctx, badge) {
  if (!badge || node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "11px sans-serif";
  const pad = 4;
  const maxWidth = Math.max(40, node.size[0] - 2 * pad);
  let text = badge.text;
  while (text.length > 4 && ctx.measureText(text).width > maxWidth - 2 * pad) text = text.slice(0, -2);
  if (text !== badge.text) text = text.slice(0, -1) + "…";
  const width = Math.min(maxWidth, ctx.measureText(text).width + 2 * pad);
  const y = node.size[1] + 4;
  ctx.fillStyle = badge.warn ? "#7a4b00" : "#24503a";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(pad, y, width, 16, 4); else ctx.rect(pad, y, width, 16);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.fillText(text, 2 * pad, y + 12);
  ctx.restore();
}

function videoUrl(item) {
  const params = new URLSearchParams({ filename: item.filename, subfolder: item.subfolder || "", type: item.type || "output" });
  return `/view?${params.toString()}`;
}

function showLegacyVideo(node, item) {
  // The 2024 frontend tries to draw an mp4 as an image; show it in a <video> element instead.
  node.images = [];
  node.imgs = null;
  if (!node.addDOMWidget) return;
  if (!node.latentsyncVideo) {
    const video = document.createElement("video");
    Object.assign(video, { controls: true, loop: true, muted: true, autoplay: true });
    video.style.width = "100%";
    node.latentsyncVideo = video;
    const widget = node.addDOMWidget("latentsync_preview", "preview", video, {
      serialize: false, hideOnZoom: false, getMinHeight: () => 160, getHeight: () => 320,
    });
    widget.serialize = false;
  }
  node.latentsyncVideo.src = videoUrl(item);
  node.setSize([node.size[0], node.computeSize([node.size[0], node.size[1]])[1]]);
}

function placeUploadUnderFileList(nodeType, nodeData, fileInput) {
  // The new frontend's upload button ("upload", added by Comfy.UploadImage for video_upload) is created where
  // input_order puts it: there, right under the file list, as core's Load Video has it. Its value is saved, so
  // workflows saved with it last (before this change, or by ComfyUI without it) are mapped to the new order.
  const required = nodeData.input?.required;
  const order = nodeData.input_order?.required;
  if (!required?.upload || !Array.isArray(order)) return;
  nodeData.input_order.required = [fileInput, "upload", ...order.filter((n) => n !== fileInput && n !== "upload")];
  const configure = nodeType.prototype.configure;
  nodeType.prototype.configure = function (info) {
    const values = info?.widgets_values;
    if (Array.isArray(values) && values.length > 2 && values[1] !== "image" && values[values.length - 1] === "image") {
      info = { ...info, widgets_values: [values[0], "image", ...values.slice(1, -1)] };
    }
    return configure.call(this, info);
  };
}

function addAudioPlayer(nodeData) {
  // Core's Load Audio gets an upload button (Comfy.UploadAudio adds "upload" for audio_upload) and a player
  // ("audioUI", which Comfy.AudioWidget adds for core classes only). Both come after `path` (the upload button
  // needs the player to exist first), so saved [audio, path] values keep their places.
  const required = nodeData.input?.required;
  if (!required?.upload) return; // a frontend without audio upload (e.g. 2024's): leave the node as it is
  const upload = required.upload;
  delete required.upload;
  required.audioUI = ["AUDIO_UI", {}];
  required.upload = upload;
}

app.registerExtension({
  name: EXTENSION,

  async setup() {
    console.log(`[${EXTENSION}] extension setup`);
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData.category || "").startsWith("LatentSync")) return;

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      const badge = badgeFromMessage(message);
      if (badge) {
        this.properties = this.properties || {};
        this.properties[BADGE_PROPERTY] = badge; // saved with the workflow: a reload shows it again
      }
      const video = message?.latentsync_video?.[0];
      if (video && isLegacyFrontend()) showLegacyVideo(this, video);
      this.setDirtyCanvas?.(true, true);
      return result;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const result = onDrawForeground?.apply(this, arguments);
      drawBadge(this, ctx, this.properties?.[BADGE_PROPERTY]);
      return result;
    };

    if (nodeData.name === "LatentSyncLoadVideo") placeUploadUnderFileList(nodeType, nodeData, "video");
    if (nodeData.name === "LatentSyncLoadAudio") addAudioPlayer(nodeData);

    if (nodeData.name === "LoadLatentSyncModel") {
      const description = String(nodeData.description || "");
      const at = description.indexOf(MODEL_FILES_HEADING);
      if (at >= 0) modelHelp = "LatentSync " + description.slice(at);
    }
    if (nodeData.name === "LoadLatentSyncModel" || nodeData.name === "LatentSyncFaceAlignCrop") {
      const getExtraMenuOptions = nodeType.prototype.getExtraMenuOptions;
      nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
        getExtraMenuOptions?.apply(this, arguments);
        options.push(
          { content: "LatentSync: where do the model files go?", callback: () => window.alert(modelHelp || HF_PAGE) },
          { content: "LatentSync: open the model page", callback: () => window.open(HF_PAGE, "_blank", "noopener") },
        );
      };
    }
  },
});
