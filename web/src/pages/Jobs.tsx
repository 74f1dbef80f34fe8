import { useWatch } from "../useWatch";
import type { JobBrief } from "../types";
import { ErrorNote } from "../ErrorNote";
import { SubmitForm } from "../SubmitForm";

export function JobsPage({ go }: { go: (hash: string) => void }) {
  const jobs = useWatch<JobBrief[]>("jobs.list");
  const list = jobs.value ?? [];
  return (
    <section aria-labelledby="jobs-title">
      <h1 id="jobs-title">Jobs</h1>
      <ErrorNote error={jobs.error} />
      <div className="scroll">
        <table>
          <caption className="sr-only">This daemon's jobs, newest first</caption>
          <thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Rounds done</th><th scope="col">Submitted</th></tr></thead>
          <tbody>
            {list.map((j) => (
              <tr key={j.job_id}>
                <th scope="row"><a href={`#/jobs/${j.job_id}`} className="mono">{j.job_id}</a></th>
                <td><span className={`state ${j.state}`}>{j.state}</span></td>
                <td>{j.completed_round}</td>
                <td>{new Date(j.created_ms).toLocaleString()}</td>
              </tr>
            ))}
            {!list.length && <tr><td colSpan={4}>{jobs.value ? "No job yet: submit one below." : "Loading…"}</td></tr>}
          </tbody>
        </table>
      </div>
      <SubmitForm onSubmitted={(id) => go(`#/jobs/${id}`)} />
    </section>
  );
}
