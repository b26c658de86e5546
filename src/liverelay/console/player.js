// The preview player: HLS when the node answers the stream's playlist (hls.js, or the
// browser's own HLS), else HTTP-FLV through mpegts.js (Media Source Extensions).
// Both libraries come from npm and are served by the node at /console/vendor/.

const loading = new Map();

function loadScript(name, global) {
  if (globalThis[global]) return Promise.resolve(globalThis[global]);
  if (!loading.has(name)) {
    loading.set(
      name,
      new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = `vendor/${name}`;
        script.onload = () => (globalThis[global] ? resolve(globalThis[global]) : reject(new Error(`${name} did not load`)));
        script.onerror = () => reject(new Error(`cannot load vendor/${name} (run npm ci)`));
        document.head.appendChild(script);
      }),
    );
  }
  return loading.get(name);
}

async function hlsAvailable(url) {
  try {
    const response = await fetch(url, { cache: "no-store", credentials: "omit" });
    if (!response.ok) return false;
    const text = await response.text();
    return text.startsWith("#EXTM3U");
  } catch {
    return false; // no HLS on this node (yet), or not reachable from here
  }
}

// Starts playing into `video`; resolves to { kind: "hls" | "flv", stop() }.
export async function startPreview(video, { hlsUrl, flvUrl }) {
  video.muted = true;
  video.playsInline = true;
  if (hlsUrl && (await hlsAvailable(hlsUrl))) {
    const Hls = await loadScript("hls.js", "Hls");
    if (Hls.isSupported()) {
      const hls = new Hls({ lowLatencyMode: true, liveSyncDurationCount: 2 });
      hls.loadSource(hlsUrl);
      hls.attachMedia(video);
      video.play().catch(() => {});
      return {
        kind: "hls",
        stop() {
          hls.destroy();
          video.removeAttribute("src");
        },
      };
    }
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = hlsUrl;
      video.play().catch(() => {});
      return {
        kind: "hls",
        stop() {
          video.pause();
          video.removeAttribute("src");
          video.load();
        },
      };
    }
  }
  const mpegts = await loadScript("mpegts.js", "mpegts");
  mpegts.LoggingControl.enableVerbose = false;
  mpegts.LoggingControl.enableDebug = false;
  mpegts.LoggingControl.enableInfo = false;
  if (!mpegts.getFeatureList().mseLivePlayback) throw new Error("this browser cannot play live HTTP-FLV (no MSE)");
  const player = mpegts.createPlayer(
    { type: "flv", isLive: true, url: flvUrl, cors: true },
    { enableWorker: false, lazyLoad: false, liveBufferLatencyChasing: true, enableStashBuffer: false },
  );
  player.attachMediaElement(video);
  player.load();
  const started = player.play();
  if (started && started.catch) started.catch(() => {});
  return {
    kind: "flv",
    stop() {
      try {
        player.pause();
        player.unload();
        player.detachMediaElement();
      } finally {
        player.destroy();
      }
    },
  };
}
