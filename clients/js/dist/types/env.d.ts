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
export declare function defaultEnv(): Env;
