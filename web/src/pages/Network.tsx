import { useWatch } from "../useWatch";
import type { NodeStatus, Peer } from "../types";
import { ErrorNote } from "../ErrorNote";

export function NetworkPage() {
  const node = useWatch<NodeStatus>("node.status");
  const peers = useWatch<Peer[]>("node.peers");
  const n = node.value;
  const list = peers.value ?? [];
  return (
    <section aria-labelledby="network-title">
      <h1 id="network-title">Network</h1>
      <ErrorNote error={node.error ?? peers.error} />
      <h2>This node</h2>
      {n ? (
        <dl className="facts">
          <dt>Peer id</dt><dd className="mono" data-testid="peer-id">{n.peer_id}</dd>
          <dt>Role</dt><dd>{n.role}</dd>
          <dt>Uptime</dt><dd>{Math.round(n.uptime_s)} s</dd>
          <dt>Peers</dt><dd>{n.peers} live, {n.connected} connected</dd>
          <dt>Reachability</dt><dd>{n.nat?.reachability ?? "not reported by this daemon"}</dd>
          <dt>Addresses</dt>
          <dd><ul className="plain mono">{n.addrs.map((a) => <li key={a}>{a}</li>)}</ul></dd>
          <dt>Bootstrap nodes</dt>
          <dd>{n.bootstrap && n.bootstrap.length
            ? <ul className="plain mono">{n.bootstrap.map((a) => <li key={a}>{a}</li>)}</ul>
            : "none configured"}</dd>
        </dl>
      ) : <p aria-live="polite">Loading…</p>}
      <h2>Peers ({list.length})</h2>
      <div className="scroll">
        <table>
          <caption className="sr-only">Live peers with their health and reputation</caption>
          <thead><tr>
            <th scope="col">Peer</th><th scope="col">Health</th><th scope="col">Reputation</th>
            <th scope="col">Work</th><th scope="col">Connection</th><th scope="col">Reachability</th>
            <th scope="col">Seen</th>
          </tr></thead>
          <tbody>
            {list.map((p) => (
              <tr key={p.peer_id}>
                <th scope="row" className="mono" title={p.peer_id}>{p.peer_id.slice(0, 12)}…{p.peer_id.slice(-6)}</th>
                <td><meter min={0} max={100} value={p.health} aria-label={`health ${p.health}`} /> {p.health.toFixed(0)}</td>
                <td>{p.reputation === undefined ? "—" : p.reputation.toFixed(2)}</td>
                <td>{p.accepting ? "accepting" : "busy"} ({p.queue_length}/{p.queue_capacity})</td>
                <td>{p.connected ? "direct" : "via others"}</td>
                <td>{p.reachability ?? (p.addrs.some((a) => a.includes("/p2p-circuit")) ? "behind NAT (relayed)" : "unknown")}</td>
                <td>{p.last_seen_s.toFixed(0)} s ago</td>
              </tr>
            ))}
            {!list.length && <tr><td colSpan={7}>No peer seen yet.</td></tr>}
          </tbody>
        </table>
      </div>
    </section>
  );
}
