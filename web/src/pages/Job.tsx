import { useState } from "react";
import { download, rpc, type RpcError } from "../api";
import { Chart } from "../Chart";
import { PricePanel } from "../Market";
import { ErrorNote } from "../ErrorNote";
import { useWatch } from "../useWatch";
import { ACTIVE, type JobStatus } from "../types";
import { RoundTables } from "../RoundTables";

const FILES = [
  ["model.safetensors", "Model (safetensors)"],
  ["metrics.json", "metrics.json"],
  ["curve.png", "Curve (PNG)"],
] as const;

export function JobPage({ jobId }: { jobId: string }) {
  const { value: job, error } = useWatch<JobStatus>("jobs.status", { job_id: jobId });
  const [note, setNote] = useState("");
  const [actionError, setActionError] = useState<RpcError | null>(null);
  if (!job) return <section><h1>Job {jobId}</h1><ErrorNote error={error} />{!error && <p aria-live="polite">Loading…</p>}</section>;
  const history = job.history ?? [];
  const cancel = async () => {
    if (!window.confirm(`Cancel job ${jobId}?`)) return;
    try {
      const { cancelled } = await rpc<{ cancelled: boolean }>("jobs.cancel", { job_id: jobId });
      setNote(cancelled ? "Job cancelled." : "The job was not running.");
    } catch (e) { setActionError(e as RpcError); }
  };
  const get = async (name: string) => {
    setNote(`Downloading ${name}…`);
    try {
      await download(`/api/jobs/${jobId}/${name}`, `${jobId}-${name}`);
      setNote(`Downloaded ${name}.`);
    } catch (e) { setActionError(e as RpcError); setNote(""); }
  };
  return (
    <section aria-labelledby="job-title">
      <h1 id="job-title">Job <span className="mono">{jobId}</span></h1>
      <ErrorNote error={error ?? actionError} />
      <p aria-live="polite" className="note">{note}</p>
      <dl className="facts">
        <dt>State</dt><dd><span className={`state ${job.state}`} data-testid="job-state">{job.state}</span>{job.phase !== job.state && ` (${job.phase})`}</dd>
        <dt>Model / data / rule</dt><dd>{job.model} on {job.dataset}, {job.rule}</dd>
        <dt>Accuracy</dt><dd>{job.test_accuracy === undefined ? "—" : `${(job.test_accuracy * 100).toFixed(1)}%`}</dd>
        <PricePanel jobId={jobId} />
        <dt>Model sha256</dt><dd className="mono wrap" data-testid="model-sha">{job.model_sha256 || "—"}</dd>
        {job.error && <><dt>Error</dt><dd className="error">{job.error}</dd></>}
      </dl>
      <label htmlFor="progress">Rounds: {job.completed_round} of {job.rounds}</label>
      <progress id="progress" max={job.rounds} value={job.completed_round} />
      <div className="actions">
        {FILES.map(([name, label]) => (
          <button key={name} type="button" onClick={() => void get(name)} disabled={!job.model_sha256}>Download {label}</button>
        ))}
        {ACTIVE.has(job.state) && <button type="button" className="danger" onClick={() => void cancel()}>Cancel job</button>}
      </div>
      <h2>Accuracy and loss</h2>
      <Chart rounds={history} />
      <RoundTables job={job} />
    </section>
  );
}
