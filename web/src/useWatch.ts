import { useEffect, useState } from "react";
import { RpcError, watch } from "./api";

/** The live answer of a read-only method, and the last error (cleared by a good answer). */
export function useWatch<T>(method: string, params: Record<string, unknown> = {}) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<RpcError | null>(null);
  const key = JSON.stringify(params);
  useEffect(() => {
    setValue(null);
    return watch<T>(method, JSON.parse(key), (v) => { setValue(v); setError(null); }, setError);
  }, [method, key]);
  return { value, error };
}
