import { describe, expect, it } from "vitest";
import { initToken, parseSse, RpcError } from "./api";

describe("parseSse", () => {
  it("returns complete events and keeps the unfinished rest", () => {
    const { data, rest } = parseSse('retry: 2000\n\ndata: {"a":1}\n\n: ping\n\ndata: {"b"');
    expect(data).toEqual(['{"a":1}']);
    expect(rest).toBe('data: {"b"');
  });
});

describe("initToken", () => {
  it("takes the token from the fragment, stores it for the tab and removes it from the URL", () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => store.set(k, v) } as unknown as Storage;
    const replaced: string[] = [];
    const history = { replaceState: (_s: unknown, _t: string, url: string) => replaced.push(url) } as unknown as History;
    const loc = { hash: "#token=abc_DEF-123", pathname: "/" } as Location;
    expect(initToken(loc, storage, history)).toBe("abc_DEF-123");
    expect(replaced).toEqual(["/#/jobs"]);
    const later = { hash: "#/network", pathname: "/" } as Location;
    expect(initToken(later, storage, history)).toBe("abc_DEF-123");
    expect(document.cookie).toBe("");
  });
});

describe("RpcError.field", () => {
  it("names the spec field an invalid-params error points at", () => {
    expect(new RpcError(-32602, "invalid params: spec.rounds: too big", { param: "spec.rounds" }).field).toBe("rounds");
    expect(new RpcError(-32602, "x", { param: "job_id" }).field).toBeNull();
  });
});

describe("marketNote", () => {
  it("says plainly when the daemon has no market or no ledger", async () => {
    const { marketNote } = await import("./Market");
    expect(marketNote(new RpcError(-32601, "method not found: market.wallet"))).toContain("no market");
    expect(marketNote(new RpcError(-32050, "no [ledger] configured", { reason: "no_ledger" }))).toContain("No [ledger]");
    expect(marketNote(new RpcError(-32050, "chain down", { reason: "rpc" }))).toBe("chain down");
  });
});
