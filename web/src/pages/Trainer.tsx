import { ErrorNote } from "../ErrorNote";
import { WalletPanel } from "../Market";
import { useWatch } from "../useWatch";
import type { Peer, TrainerStatus } from "../types";

// The trainer's task states (protocols/job/trainer.py) that mean "still in this job".
const CURRENT = new Set(["offered", "selected-pending", "training"]);

export function TrainerPage() {
  const { value: t, error } = useWatch<TrainerStatus>("trainer.status");
  const peers = useWatch<Peer[]>("node.peers");
  const jobs = Object.entries(t?.jobs ?? {});
  const active = jobs.filter(([, j]) => CURRENT.has(j.state));
  const past = jobs.filter(([, j]) => !CURRENT.has(j.state));
  const table = (rows: typeof jobs, caption: string) => (
    <div className="scroll"><table>
      <caption className="sr-only">{caption}</caption>
      <thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Rounds trained</th><th scope="col">Last figures</th></tr></thead>
      <tbody>
        {rows.map(([id, j]) => {
          const { state, rounds_done, ...rest } = j;
          return (
            <tr key={id}><th scope="row" className="mono">{id}</th><td>{state}</td><td>{rounds_done}</td>
              <td className="mono small">{Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(4) : String(v)}`).join(" ") || "—"}</td></tr>
          );
        })}
        {!rows.length && <tr><td colSpan={4}>None.</td></tr>}
      </tbody>
    </table></div>
  );
  const known = (peers.value ?? []).filter((p) => p.reputation !== undefined && p.reputation !== 0);
  return (
    <section aria-labelledby="trainer-title">
      <h1 id="trainer-title">Trainer</h1>
      <ErrorNote error={error} />
      {t && <p>{t.busy ? "Training now" : "Idle"}; {t.slots} slot{t.slots === 1 ? "" : "s"}.</p>}
      <h2>Current tasks</h2>
      {table(active, "Tasks in progress")}
      <h2>Trained and past tasks</h2>
      {table(past, "Tasks this trainer has trained, finished or left")}
      <WalletPanel />
      <h2>Reputation</h2>
      <p className="note">
        Each owner keeps its own reputation book of its trainers; an owner does not report it to
        the trainer. Below: the scores this daemon's owner role holds of the peers it has worked with.
      </p>
      <ul className="plain">
        {known.map((p) => <li key={p.peer_id}><span className="mono">{p.peer_id.slice(0, 12)}…</span> {p.reputation?.toFixed(2)}</li>)}
        {!known.length && <li>No peer has a score here yet.</li>}
      </ul>
    </section>
  );
}
