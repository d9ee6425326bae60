// The page's environment: connectivity and lifecycle events, and the tab's
// session storage. In browsers `online`/`offline`/`pageshow` come from
// `window`, `visibilitychange` and `resume` (Page Lifecycle: a frozen page
// runs again) from `document`; elsewhere (Node) the environment is always
// online and has no session storage.

export interface Env {
  /** `navigator.onLine`: false pauses connection attempts. */
  onLine(): boolean;
  /** For `online`, `offline`, `pageshow`, `visibilitychange` and `resume`. */
  addEventListener(type: string, fn: () => void): void;
  removeEventListener?(type: string, fn: () => void): void;
  /** Whether the page is visible (`document.visibilityState`); default true. */
  visible?(): boolean;
  /**
   * The tab's `sessionStorage`, where a fallback to long polling is
   * remembered across reloads. Absent, null or throwing: not remembered.
   */
  sessionStorage?(): SessionStorageLike | null | undefined;
}

/** The part of `Storage` the client uses. */
export interface SessionStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

interface EventTargetish {
  addEventListener(type: string, fn: () => void): void;
  removeEventListener(type: string, fn: () => void): void;
}

function target(v: unknown): EventTargetish | undefined {
  return v && typeof (v as EventTargetish).addEventListener === 'function' ? (v as EventTargetish) : undefined;
}

export function defaultEnv(): Env {
  const g = globalThis as {
    window?: unknown;
    document?: { visibilityState?: string };
    navigator?: { onLine?: boolean };
    sessionStorage?: SessionStorageLike;
  };
  const win = target(g.window);
  const doc = target(g.document);
  const on = (type: string) => (type === 'visibilitychange' || type === 'resume' ? doc : win);
  return {
    onLine: () => g.navigator?.onLine !== false,
    visible: () => g.document?.visibilityState !== 'hidden',
    // Reading it may throw (storage blocked for the page): the caller catches.
    sessionStorage: () => g.sessionStorage,
    addEventListener: (type, fn) => on(type)?.addEventListener(type, fn),
    removeEventListener: (type, fn) => on(type)?.removeEventListener(type, fn),
  };
}
