// What the daemon's methods answer (docs/control.md), as far as the pages read it.

export interface RoundRecord {
  round: number;
  seconds: number;
  test_accuracy: number;
  test_loss: number;
  accepted: number;
  rejected: number;
  model_sha256: string;
  trainers?: string[];
  used_updates?: string[];
  rejected_updates?: string[];
  rejected_reasons?: Record<string, string>;
  outvoted_updates?: string[];
  updates?: UpdateRow[];
}

/** One update a round judged: whose, and the owner's verdict with its reason code. */
export interface UpdateRow {
  peer: string;
  slot: number;
  sha256: string;
  samples: number;
  verdict: string;
  reason: string;
}

export interface JobStatus {
  job_id: string;
  state: string;
  phase: string;
  round: number;
  completed_round: number;
  rounds: number;
  model: string;
  dataset: string;
  rule: string;
  model_sha256: string | null;
  error: string;
  trainers: Record<string, string>;
  offers: number;
  rejected: number;
  history: RoundRecord[];
  test_accuracy?: number;
  test_loss?: number;
}

export interface JobBrief {
  job_id: string;
  state: string;
  completed_round: number;
  created_ms: number;
  model_sha256: string | null;
}

export interface Peer {
  peer_id: string;
  addrs: string[];
  health: number;
  accepting: boolean;
  reputation?: number;
  connected: boolean;
  last_seen_s: number;
  queue_length: number;
  queue_capacity: number;
  reachability?: string;
}

export interface NodeStatus {
  peer_id: string;
  role: string;
  addrs: string[];
  bootstrap?: string[];
  nat?: { reachability?: string; relay_service?: boolean; [k: string]: unknown };
  peers: number;
  connected: number;
  uptime_s: number;
}

export interface TrainerJob { state: string; rounds_done: number; [k: string]: unknown }
export interface TrainerStatus {
  busy: boolean | number;
  slots: number;
  jobs: Record<string, TrainerJob>;
  dropped: Record<string, number>;
}

export interface SchemaField {
  type?: string;
  enum?: string[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  title?: string;
  description?: string;
  $ref?: string;
  anyOf?: SchemaField[];
}
export interface SpecSchema { properties: Record<string, SchemaField>; $defs?: Record<string, SchemaField> }

/** A field's JSON type, following `$ref` and nullable `anyOf` (pydantic's forms). */
export function typeOf(schema: SpecSchema, f: SchemaField): string | undefined {
  if (f.$ref) return typeOf(schema, schema.$defs?.[f.$ref.split("/").pop() ?? ""] ?? {});
  if (f.anyOf) return f.anyOf.map((a) => typeOf(schema, a)).find((t) => t && t !== "null");
  return f.type;
}

export const ACTIVE = new Set(["preparing", "running"]);
export const short = (id: string, n = 10) => (id.length > n ? `${id.slice(0, 4)}…${id.slice(-n + 5)}` : id);
