import { ACTIVE, type JobStatus, type RoundRecord } from "./types";

const shortPeer = (p: string) => `${p.slice(0, 8)}…${p.slice(-4)}`;

/** A trainer's part in a round: the owner's verdict on its update(s), with the reason code. */
export function part(r: RoundRecord, peer: string): string {
  const mine = (r.updates ?? []).filter((u) => u.peer === peer);
  if (mine.length) {
    return mine.map((u) => (u.reason && u.verdict !== "accepted" ? `${u.verdict}: ${u.reason}` : u.verdict)).join(", ");
  }
  return (r.trainers ?? []).includes(peer) ? "used" : "—";
}

/** Each trainer's state per round, and every rejected update with its reason code. */
export function RoundTables({ job }: { job: JobStatus }) {
  const history = job.history ?? [];
  const whose = new Map(history.flatMap((r) => (r.updates ?? []).map((u) => [u.sha256, u.peer] as const)));
  const rejected = history.flatMap((r) => Object.entries(r.rejected_reasons ?? {})
    .map(([sha, reason]) => ({ round: r.round, sha, reason, peer: whose.get(sha) })));
  const trainerIds = [...new Set([
    ...history.flatMap((r) => [...(r.trainers ?? []), ...(r.updates ?? []).map((u) => u.peer)]),
    ...Object.keys(job.trainers)])].sort();
  const live = ACTIVE.has(job.state);
  return (
    <>
      <h2>Trainers per round</h2>
      <div className="scroll">
        <table>
          <caption className="sr-only">Each trainer's part in each round</caption>
          <thead><tr><th scope="col">Trainer</th>
            {history.map((r) => <th scope="col" key={r.round}>R{r.round}</th>)}
            {live && <th scope="col">Now</th>}</tr></thead>
          <tbody>
            {trainerIds.map((t) => (
              <tr key={t}>
                <th scope="row" className="mono" title={t}>{shortPeer(t)}</th>
                {history.map((r) => <td key={r.round}>{part(r, t)}</td>)}
                {live && <td>{job.trainers[t] ?? "—"}</td>}
              </tr>
            ))}
            {!trainerIds.length && <tr><td colSpan={2}>No trainer yet.</td></tr>}
          </tbody>
        </table>
      </div>
      <h2>Rejected updates ({rejected.length})</h2>
      {rejected.length ? (
        <div className="scroll"><table>
          <caption className="sr-only">Updates the owner rejected, with the reason code</caption>
          <thead><tr><th scope="col">Round</th><th scope="col">Trainer</th><th scope="col">Update sha256</th><th scope="col">Reason</th></tr></thead>
          <tbody>{rejected.map((r) => (
            <tr key={`${r.round}-${r.sha}`}><td>{r.round}</td><td className="mono">{r.peer ? shortPeer(r.peer) : "—"}</td>
              <td className="mono">{r.sha.slice(0, 16)}…</td><td><code>{r.reason}</code></td></tr>
          ))}</tbody>
        </table></div>
      ) : <p>None: every update so far passed validation.</p>}
    </>
  );
}
