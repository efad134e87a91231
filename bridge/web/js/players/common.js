// What the players share: waiting for the first decoded frame of a <video>, and timeouts.

export class PlayerError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PlayerError';
  }
}

/** Resolve when `video` has presented a frame; reject after `ms` or when `signal` aborts. */
export function firstFrame(video, ms, signal) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      signal?.removeEventListener('abort', onAbort);
      fn(value);
    };
    const onAbort = () => finish(reject, new DOMException('stopped', 'AbortError'));
    const timer = setTimeout(() => finish(reject, new PlayerError(`no picture within ${ms / 1000} s`)), ms);
    // requestVideoFrameCallback fires when a frame is composited; the poll covers browsers
    // without it (and a video that is not painted because it is off screen).
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => finish(resolve));
    const poll = setInterval(() => {
      const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      if (video.readyState >= 2 && (!quality || quality.totalVideoFrames > 0) && video.videoWidth > 0) {
        finish(resolve);
      }
    }, 100);
    signal?.addEventListener('abort', onAbort);
  });
}

/** A fetch that gives up after `ms` (and when `signal` aborts). */
export async function fetchWithin(url, init, ms, signal) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new PlayerError(`${url.split('?')[0]} took over ${ms / 1000} s`)), ms);
  const onAbort = () => controller.abort(signal.reason);
  signal?.addEventListener('abort', onAbort);
  try {
    return await fetch(url, { ...init, signal: controller.signal });
  } catch (err) {
    throw controller.signal.aborted ? (controller.signal.reason || err) : err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Start muted playback; autoplay rules allow that without a user gesture. */
export async function playMuted(video) {
  try {
    await video.play();
  } catch (err) {
    if (err.name !== 'AbortError') throw err; // a newer load interrupted this play(): fine
  }
}
