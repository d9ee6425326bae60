export interface Env {
    /** `navigator.onLine`: false pauses connection attempts. */
    onLine(): boolean;
    /** For `online`, `offline`, `pageshow`, `visibilitychange` and `resume`. */
    addEventListener(type: string, fn: () => void): void;
    removeEventListener?(type: string, fn: () => void): void;
    /** Whether the page is visible (`document.visibilityState`); default true. */
    visible?(): boolean;
}
export declare function defaultEnv(): Env;
