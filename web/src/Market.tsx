import { Fragment, useCallback, useEffect, useState } from "react";
import { rpc, RpcError } from "./api";

type Answer = { value?: Record<string, unknown>; error?: RpcError };

async function ask(method: string, params: Record<string, unknown> = {}): Promise<Answer> {
  try { return { value: await rpc<Record<string, unknown>>(method, params) }; }
  catch (e) { return { error: e as RpcError }; }
}

/** Why a market method gave nothing: no market in this daemon, no ledger, or its error. */
export function marketNote(error: RpcError): string {
  if (error.code === -32601) return "This daemon has no market (docs/ledger.md).";
  const reason = (error.data as { reason?: string } | undefined)?.reason;
  if (reason === "no_ledger") return "No [ledger] configured: this daemon neither pays nor earns (docs/ledger.md).";
  return error.message;
}

function Facts({ value }: { value: Record<string, unknown> }) {
  return (
    <dl className="facts">
      {Object.entries(value).map(([k, v]) => (
        <Fragment key={k}>
          <dt>{k}</dt>
          <dd className="mono wrap">{v !== null && typeof v === "object" ? JSON.stringify(v) : String(v ?? "—")}</dd>
        </Fragment>
      ))}
    </dl>
  );
}

/** The trainer's wallet and earnings (`market.wallet`, `market.earnings`), on demand. */
export function WalletPanel() {
  const [wallet, setWallet] = useState<Answer | null>(null);
  const [earnings, setEarnings] = useState<Answer | null>(null);
  const refresh = useCallback(() => {
    void ask("market.wallet").then(setWallet);
    void ask("market.earnings").then(setEarnings);
  }, []);
  useEffect(refresh, [refresh]);
  return (
    <>
      <h2>Wallet and earnings</h2>
      <button type="button" onClick={refresh}>Refresh wallet and earnings</button>
      <h3>Wallet</h3>
      {wallet?.value ? <Facts value={wallet.value} /> : <p className="note">{wallet?.error ? marketNote(wallet.error) : "Loading…"}</p>}
      <h3>Earnings</h3>
      {earnings?.value ? <Facts value={earnings.value} /> : <p className="note">{earnings?.error ? marketNote(earnings.error) : "Loading…"}</p>}
    </>
  );
}

interface PriceTerms { budget?: number | string; max_price?: number | string; unit?: string }

/** A job's price terms from its spec (`jobs.result`), in wei. */
export function PricePanel({ jobId }: { jobId: string }) {
  const [price, setPrice] = useState<PriceTerms | null | undefined>(undefined);
  useEffect(() => {
    rpc<{ spec: string }>("jobs.result", { job_id: jobId })
      .then((r) => setPrice((JSON.parse(r.spec) as { price?: PriceTerms }).price ?? null))
      .catch(() => setPrice(null));
  }, [jobId]);
  if (price === undefined) return null;
  const paid = price && (Number(price.budget ?? 0) > 0 || Number(price.max_price ?? 0) > 0);
  return (
    <>
      <dt>Price</dt>
      <dd>{paid ? `budget ${price.budget} wei, at most ${price.max_price} wei per ${price.unit ?? "update"}` : "none (no [price] table)"}</dd>
    </>
  );
}
