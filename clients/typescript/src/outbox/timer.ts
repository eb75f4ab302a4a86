// Time as the outbox sees it, injectable so tests move a clock instead of sleeping.
export interface Timer {
  /** Epoch milliseconds. */
  now(): number;
  /** Runs `callback` after `ms`; returns a function that cancels it. */
  setTimeout(callback: () => void, ms: number): () => void;
}

export const systemTimer: Timer = {
  now: () => Date.now(),
  setTimeout(callback, ms) {
    const handle = setTimeout(callback, ms);
    return () => clearTimeout(handle);
  },
};
