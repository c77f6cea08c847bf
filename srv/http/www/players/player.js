// srv's player page: plays the stream named by ?url= in a <video>, HTTP-FLV with mpegts.js and
// HLS with hls.js (both vendored, see ../vendor/vendor.json), and shows what it is doing.
//
// A live player must outlive its publisher. When the publisher reconnects, an HTTP-FLV response
// goes on with new sequence headers and restarted timestamps (mpegts.js follows them), and an
// HLS playlist gets a discontinuity (hls.js follows it). When the publisher stops, the playlist
// ends (EXT-X-ENDLIST) and hls.js plays what is left and stops for good: the page then polls the
// playlist every POLL_MS and starts again once it is live. On top of that, a fatal error, an
// HTTP-FLV response that ends, or a picture that stands still for STALL_MS while the stream should
// play tears the player down and builds it again (`reloads`).
// ?ll=1 plays HLS in hls.js's low-latency mode (LL-HLS: parts, blocking playlist reloads, preload
// hints; it keeps PART-HOLD-BACK behind the live edge).
// window.srvPlayer.snapshot() returns the numbers shown, for tests and scripts.
"use strict";

const STALL_MS = 6000;       // currentTime unchanged that long while playing: reload
const RELOAD_DELAY_MS = 1000;
const POLL_MS = 2000;        // an ended HLS stream: how often to look for its next publisher

const video = document.getElementById("video");
const params = new URLSearchParams(location.search);
const LOW_LATENCY = ["1", "on", "yes", "true"].includes((params.get("ll") || "").toLowerCase());
const state = {
  url: params.get("url") || "",
  kind: "",            // "flv" (mpegts.js) or "hls" (hls.js)
  player: null,        // the mpegts.js or hls.js instance
  errors: [],          // {at, fatal, type, details}: every error either player reported
  reloads: 0,
  lastTime: -1,
  lastMove: Date.now(),
  reloadTimer: null,
  ended: false,        // the stream ended (EXT-X-ENDLIST played out): waiting for a publisher
  mediaUrl: "",        // HLS: the media playlist hls.js reads
};

function guessKind(url) {
  const forced = params.get("type");
  if (forced === "flv" || forced === "hls") return forced;
  const path = url.split("?")[0].toLowerCase();
  return path.endsWith(".m3u8") ? "hls" : "flv";
}

function logError(fatal, type, details) {
  const entry = { at: new Date().toISOString(), fatal, type: String(type), details: String(details) };
  state.errors.push(entry);
  const log = document.getElementById("log");
  log.textContent += `${entry.at} ${fatal ? "fatal" : "error"}: ${entry.type} ${entry.details}\n`;
}

function startFlv(url) {
  if (!window.mpegts || !mpegts.isSupported()) {
    logError(true, "unsupported", "mpegts.js needs Media Source Extensions");
    return null;
  }
  const player = mpegts.createPlayer({ type: "flv", isLive: true, url }, {
    enableWorker: false,
    lazyLoad: false,
    liveBufferLatencyChasing: true,
    autoCleanupSourceBuffer: true,
  });
  player.on(mpegts.Events.ERROR, (type, details, info) => {
    logError(true, type, details + (info && info.msg ? `: ${info.msg}` : ""));
    scheduleReload();
  });
  player.on(mpegts.Events.LOADING_COMPLETE, () => scheduleReload());  // the server closed the response
  player.attachMediaElement(video);
  player.load();
  const played = player.play();
  if (played && played.catch) played.catch(() => {});
  return player;
}

function startHls(url) {
  if (!window.Hls || !Hls.isSupported()) {
    if (video.canPlayType("application/vnd.apple.mpegurl")) {  // Safari: native HLS
      video.src = url;
      video.play().catch(() => {});
      return { destroy() { video.removeAttribute("src"); video.load(); } };
    }
    logError(true, "unsupported", "hls.js needs Media Source Extensions");
    return null;
  }
  const hls = new Hls({
    liveDurationInfinity: true,
    lowLatencyMode: LOW_LATENCY,
    // LL: play up to 1.5x to get back to the target latency (PART-HOLD-BACK) after a stall;
    // at hls.js's default 1x every stall would stay as latency for good
    maxLiveSyncPlaybackRate: LOW_LATENCY ? 1.5 : 1,
    debug: params.has("debug"),
  });
  let mediaRecoveries = 0;
  hls.on(Hls.Events.ERROR, (_event, data) => {
    logError(data.fatal, data.type, data.details);
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries++ < 3) {
      hls.recoverMediaError();
    } else {
      scheduleReload();
    }
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
  hls.on(Hls.Events.LEVEL_LOADED, (_event, data) => { state.mediaUrl = data.details.url; });
  hls.loadSource(url);
  hls.attachMedia(video);
  return hls;
}

async function waitForLive() {
  // EXT-X-ENDLIST was played out: the stream is back once its playlist no longer ends
  if (!state.ended) return;
  try {
    // the media playlist hls.js last read (with hls_ctx it names this viewer; the URL given
    // may be a variant playlist that makes a new viewer at each request)
    const response = await fetch(state.mediaUrl || state.url, { cache: "no-store" });
    const text = response.ok ? await response.text() : "";
    if (text.includes("#EXTINF") && !text.includes("#EXT-X-ENDLIST")) {
      state.ended = false;
      scheduleReload();
      return;
    }
  } catch (e) {
    // not there yet: keep looking
  }
  setTimeout(waitForLive, POLL_MS);
}

function onEnded() {
  if (state.kind !== "hls" || state.ended) return;
  state.ended = true;
  waitForLive();
}

function start() {
  state.kind = guessKind(state.url);
  state.ended = false;
  state.mediaUrl = "";
  state.lastTime = -1;
  state.lastMove = Date.now();
  state.player = state.kind === "hls" ? startHls(state.url) : startFlv(state.url);
  document.getElementById("s-player").textContent =
    state.kind === "hls" ? `hls.js ${window.Hls ? Hls.version : ""}` : `mpegts.js ${window.mpegts ? mpegts.version : ""}`;
}

function stop() {
  const player = state.player;
  state.player = null;
  if (!player) return;
  try {
    if (state.kind === "flv") {
      player.pause();
      player.unload();
      player.detachMediaElement();
    }
    player.destroy();
  } catch (e) {
    logError(false, "teardown", e);
  }
}

function scheduleReload() {
  if (state.reloadTimer !== null) return;
  state.reloadTimer = setTimeout(() => {
    state.reloadTimer = null;
    state.reloads += 1;
    stop();
    start();
  }, RELOAD_DELAY_MS);
}

function bufferedAhead() {
  const b = video.buffered;
  for (let i = 0; i < b.length; i++) {
    if (video.currentTime >= b.start(i) - 0.1 && video.currentTime <= b.end(i)) return b.end(i) - video.currentTime;
  }
  return 0;
}

function latency() {
  const hls = state.kind === "hls" ? state.player : null;
  if (hls && hls.playingDate) return (Date.now() - hls.playingDate.getTime()) / 1000;  // EXT-X-PROGRAM-DATE-TIME
  if (hls && typeof hls.latency === "number") return hls.latency;  // from the live edge
  return bufferedAhead();  // HTTP-FLV: what the player holds ahead of the picture
}

function snapshot() {
  const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
  return {
    url: state.url,
    kind: state.kind,
    currentTime: video.currentTime,
    paused: video.paused,
    readyState: video.readyState,
    frames: quality ? quality.totalVideoFrames : (video.webkitDecodedFrameCount || 0),
    dropped: quality ? quality.droppedVideoFrames : (video.webkitDroppedFrameCount || 0),
    width: video.videoWidth,
    height: video.videoHeight,
    buffered: bufferedAhead(),
    latency: latency(),
    ended: state.ended || video.ended,
    // HLS: EXT-X-PROGRAM-DATE-TIME of the picture shown (ms since the epoch), when listed
    programDate: state.kind === "hls" && state.player && state.player.playingDate
      ? state.player.playingDate.getTime() : null,
    now: Date.now(),  // the page's clock, to set programDate against
    lowLatency: LOW_LATENCY,
    // hls.js: seconds behind the live edge it computes, and what it aims at (PART-HOLD-BACK in LL)
    hlsLatency: state.kind === "hls" && state.player && typeof state.player.latency === "number"
      ? state.player.latency : null,
    targetLatency: state.kind === "hls" && state.player && typeof state.player.targetLatency === "number"
      ? state.player.targetLatency : null,
    reloads: state.reloads,
    errors: state.errors.slice(),
  };
}

function watchdog() {
  if (!state.url) return;
  const now = Date.now();
  if (state.ended || video.ended) {
    state.lastMove = now;  // not a stall: the stream ended and may come back
  } else if (video.currentTime !== state.lastTime) {
    state.lastTime = video.currentTime;
    state.lastMove = now;
  } else if (state.kind === "flv" && video.buffered.length) {
    // a republish restarts the timestamps: jump to where the new data is
    const last = video.buffered.length - 1;
    if (video.currentTime < video.buffered.start(last)) video.currentTime = video.buffered.start(last);
  }
  if (video.paused && !video.ended && video.readyState >= 2) video.play().catch(() => {});
  if (now - state.lastMove > STALL_MS && state.reloadTimer === null) {
    logError(false, "stall", `no progress for ${Math.round((now - state.lastMove) / 1000)}s; reloading`);
    state.lastMove = now;
    scheduleReload();
  }
  const s = snapshot();
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  const what = s.ended ? "ended, waiting for the publisher" : s.paused ? "paused" : "playing";
  show("s-state", `${what}, readyState ${s.readyState}, ${s.width}x${s.height}`);
  show("s-time", s.currentTime.toFixed(2));
  show("s-frames", String(s.frames));
  show("s-dropped", String(s.dropped));
  show("s-buffer", `${s.buffered.toFixed(2)} s`);
  show("s-latency", `${s.latency.toFixed(2)} s`);
  show("s-reloads", String(s.reloads));
}

video.addEventListener("ended", onEnded);
document.getElementById("url").value = state.url;
document.getElementById("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const url = document.getElementById("url").value.trim();
  const next = new URLSearchParams(location.search);
  next.set("url", url);
  history.replaceState(null, "", `?${next}`);
  stop();
  state.url = url;
  state.errors = [];
  state.reloads = 0;
  if (url) start();
});
window.srvPlayer = { snapshot, reload: scheduleReload };
if (state.url) start();
setInterval(watchdog, 500);
