import { useEffect, useState, type FormEvent } from "react";
import { RpcError, rpc, upload } from "./api";
import { typeOf, type SchemaField, type SpecSchema } from "./types";

// The fields a new user sets first; every other field of the spec is under "More".
const MAIN = ["model", "dataset", "rounds", "trainers", "epochs", "lr", "batch_size", "partition", "rule"];

/** The text a field starts with: its default (objects and lists as JSON; none: blank). */
function defaultText(schema: SpecSchema, f: SchemaField): string {
  const t = typeOf(schema, f);
  if (t === "object" || t === "array") return f.default === undefined || f.default === null ? "" : JSON.stringify(f.default);
  return f.default === undefined || f.default === null ? "" : String(f.default);
}

function initial(schema: SpecSchema): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, f] of Object.entries(schema.properties)) out[name] = defaultText(schema, f);
  return out;
}

/**
 * Turn the form's text into the spec the daemon validates (types from the schema).
 * Every validation message comes from the daemon, the same words `distro-train submit`
 * prints; the form checks nothing itself.
 */
export function toSpec(schema: SpecSchema, values: Record<string, string>): Record<string, unknown> {
  const spec: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(schema.properties)) {
    const raw = (values[name] ?? "").trim();
    const t = typeOf(schema, f);
    if (raw === defaultText(schema, f) || raw === "") continue; // the daemon's own default
    // What does not parse is sent as typed: the daemon refuses it with its own message.
    if (t === "integer" || t === "number") {
      const v = Number(raw);
      spec[name] = Number.isNaN(v) ? raw : v;
    } else if (t === "boolean") {
      spec[name] = raw === "true";
    } else if (t === "object" || t === "array") {
      try { spec[name] = JSON.parse(raw); } catch { spec[name] = raw; }
    } else {
      spec[name] = raw;
    }
  }
  return spec;
}

function Field({ name, f, type, value, error, onChange }: {
  name: string; f: SchemaField; type?: string; value: string; error?: string; onChange: (v: string) => void }) {
  const id = `spec-${name}`;
  const errId = `${id}-error`;
  const common = { id, name, "aria-invalid": error ? true : undefined, "aria-describedby": error ? errId : undefined };
  let input;
  if (f.enum) {
    input = <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
      {f.enum.map((o) => <option key={o} value={o}>{o}</option>)}</select>;
  } else if (type === "boolean") {
    input = <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="true">yes</option><option value="false">no</option></select>;
  } else {
    const numeric = type === "integer" || type === "number";
    input = <input {...common} type="text" inputMode={numeric ? "decimal" : undefined}
      value={value} onChange={(e) => onChange(e.target.value)} spellCheck={false} />;
  }
  return (
    <div className={`field${type === "object" || type === "array" ? " wide" : ""}`}>
      <label htmlFor={id}>{name}</label>
      {input}
      {error && <p id={errId} className="error" role="alert">{error}</p>}
    </div>
  );
}

/**
 * The job form: one field per spec field (from the daemon's `jobs.schema`), sent to
 * `jobs.submit`; the daemon's validation message is shown next to the field it names.
 */
const daemonSchema = () => rpc<SpecSchema>("jobs.schema");
const daemonSubmit = (spec: Record<string, unknown>) => rpc<{ job_id: string }>("jobs.submit", { spec });

export function SubmitForm({ onSubmitted, loadSchema = daemonSchema, submit = daemonSubmit }: {
  onSubmitted: (jobId: string) => void;
  loadSchema?: () => Promise<SpecSchema>;
  submit?: (spec: Record<string, unknown>) => Promise<{ job_id: string }>;
}) {
  const [schema, setSchema] = useState<SpecSchema | null>(null);
  const [values, setValues] = useState<Record<string, string>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState("");
  const [busy, setBusy] = useState(false);
  const [uploadNote, setUploadNote] = useState("");

  useEffect(() => { // once: a new schema would reset what the user typed
    loadSchema().then((s) => { setSchema(s); setValues(initial(s)); }).catch((e) => setGeneral(String(e.message ?? e)));
  }, []);

  if (!schema) return <p aria-live="polite">{general || "Loading the job schema…"}</p>;
  const names = Object.keys(schema.properties);
  const main = MAIN.filter((n) => names.includes(n));
  const more = names.filter((n) => !main.includes(n));
  const set = (name: string) => (v: string) => setValues((old) => ({ ...old, [name]: v }));

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault();
    const spec = toSpec(schema, values);
    setErrors({});
    setGeneral("");
    setBusy(true);
    try {
      const { job_id } = await submit(spec);
      onSubmitted(job_id);
    } catch (err) {
      const rpcErr = err as RpcError;
      const field = rpcErr.field;
      if (field && field in schema.properties) setErrors({ [field]: rpcErr.message });
      else setGeneral(rpcErr.message ?? String(err));
    } finally {
      setBusy(false);
    }
  };

  const onFile = async (file: File | undefined) => {
    if (!file) return;
    setUploadNote(`Uploading ${file.name}…`);
    try {
      const up = await upload(file);
      if (schema.properties.data && typeOf(schema, schema.properties.data) === "object") {
        // the owner's own data: the spec's [data] table names the file
        let data: Record<string, unknown> = {};
        try { data = JSON.parse(values.data || "{}"); } catch { /* replaced below */ }
        set("data")(JSON.stringify({ ...data, path: up.path }));
      } else {
        set("dataset")(up.path);
      }
      setUploadNote(`Uploaded ${file.name} (${up.bytes} bytes) to the daemon: ${up.path}`);
    } catch (err) {
      setUploadNote(`Upload failed: ${(err as Error).message}`);
    }
  };

  const field = (n: string) => (
    <Field key={n} name={n} f={schema.properties[n]} type={typeOf(schema, schema.properties[n])} value={values[n] ?? ""} error={errors[n]} onChange={set(n)} />
  );
  return (
    <form className="submit" onSubmit={onSubmit} aria-labelledby="submit-title" noValidate>
      <h2 id="submit-title">Submit a job</h2>
      <div className="fields">{main.map(field)}</div>
      <div className="field wide">
        <label htmlFor="dataset-file">or upload a dataset file to the daemon</label>
        <input id="dataset-file" type="file" onChange={(e) => void onFile(e.target.files?.[0])} />
        <p aria-live="polite" className="note">{uploadNote}</p>
      </div>
      <details>
        <summary>More fields ({more.length})</summary>
        <div className="fields">{more.map(field)}</div>
      </details>
      {general && <p className="error" role="alert">{general}</p>}
      <button type="submit" disabled={busy}>{busy ? "Submitting…" : "Submit job"}</button>
    </form>
  );
}
