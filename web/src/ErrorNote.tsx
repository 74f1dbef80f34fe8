import type { RpcError } from "./api";

export function ErrorNote({ error }: { error: RpcError | null }) {
  return error ? <p className="error" role="alert">{error.message}</p> : null;
}
