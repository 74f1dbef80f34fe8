// The daemon's control API over HTTP: the same JSON-RPC methods and errors as the
// control socket. The bearer token comes once in the login URL's #fragment and is kept
// in sessionStorage for this tab (no cookies): `distro-train web` prints that URL.

const TOKEN_KEY = "distro-train-token";

export class RpcError extends Error {
  code: number;
  data: unknown;
  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.code = code;
    this.data = data;
  }
  /** The spec field an invalid-params error names ("spec.rounds" -> "rounds"), if any. */
  get field(): string | null {
    const d = this.data as { param?: unknown } | undefined;
    if (d && typeof d.param === "string" && d.param.startsWith("spec.")) {
      return d.param.slice(5);
    }
    return null;
  }
}

/** Take the token from `#token=...` (then drop it from the address bar) or the tab's store. */
export function initToken(loc: Location = window.location, store: Storage = window.sessionStorage,
                          history: History = window.history): string {
  const m = /^#token=([A-Za-z0-9_-]+)/.exec(loc.hash);
  if (m) {
    store.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", loc.pathname + "#/jobs");
  }
  return store.getItem(TOKEN_KEY) ?? "";
}

function authHeaders(): Record<string, string> {
  return { Authorization: `Bearer ${window.sessionStorage.getItem(TOKEN_KEY) ?? ""}` };
}

let nextId = 1;

export async function rpc<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
  const res = await fetch("/api/rpc", {
    method: "POST",
    headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  if (res.status === 401) throw new RpcError(401, "not logged in: open the URL `distro-train web` prints");
  const body = await res.json();
  if (body.error) throw new RpcError(body.error.code, body.error.message, body.error.data);
  return body.result as T;
}

/** Split server-sent-event text into complete events' data and the unfinished rest. */
export function parseSse(buffer: string): { data: string[]; rest: string } {
  const parts = buffer.split("\n\n");
  const rest = parts.pop() ?? "";
  const data: string[] = [];
  for (const part of parts) {
    const lines = part.split("\n").filter((l) => l.startsWith("data:"));
    if (lines.length) data.push(lines.map((l) => l.slice(5).trimStart()).join("\n"));
  }
  return { data, rest };
}

/**
 * Follow a read-only method: `onValue` gets its answer now and each time it changes
 * (server-sent events, read with fetch so the token travels in a header). Reconnects
 * after a break. Returns a function that stops it.
 */
export function watch<T>(method: string, params: Record<string, unknown>,
                         onValue: (v: T) => void, onError: (e: RpcError) => void): () => void {
  const ctrl = new AbortController();
  const query = new URLSearchParams({ method, params: JSON.stringify(params) });
  const run = async () => {
    while (!ctrl.signal.aborted) {
      try {
        const res = await fetch(`/api/events?${query}`, { headers: authHeaders(), signal: ctrl.signal });
        if (!res.ok || !res.body) {
          onError(new RpcError(res.status, res.status === 401
            ? "not logged in: open the URL `distro-train web` prints" : `events: HTTP ${res.status}`));
          if (res.status === 401 || res.status === 403) return;
        } else {
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const parsed = parseSse(buffer + value);
            buffer = parsed.rest;
            for (const d of parsed.data) {
              const msg = JSON.parse(d);
              if (msg.error) onError(new RpcError(msg.error.code, msg.error.message, msg.error.data));
              else onValue(msg.result as T);
            }
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
        onError(new RpcError(0, `connection to the daemon lost: ${String(e)}`));
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  void run();
  return () => ctrl.abort();
}

/** Download an API file (token in a header, so not a plain link) and save it as `name`. */
export async function download(path: string, name: string): Promise<void> {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw new RpcError(res.status, (await res.text()).trim());
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export interface Uploaded { path: string; sha256: string; bytes: number }

/** Send a dataset file to the daemon; it answers the path to put in the spec. */
export async function upload(file: File): Promise<Uploaded> {
  const res = await fetch(`/api/upload?name=${encodeURIComponent(file.name)}`, {
    method: "POST", headers: { ...authHeaders(), "Content-Type": "application/octet-stream" }, body: file,
  });
  if (!res.ok) throw new RpcError(res.status, (await res.text()).trim());
  return (await res.json()) as Uploaded;
}
