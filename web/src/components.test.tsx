import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { RpcError } from "./api";
import { Chart } from "./Chart";
import { RoundTables } from "./RoundTables";
import { SubmitForm, toSpec } from "./SubmitForm";
import type { RoundRecord, SpecSchema } from "./types";

afterEach(cleanup);

const round = (n: number, acc: number, loss: number): RoundRecord => ({
  round: n, seconds: n, test_accuracy: acc, test_loss: loss, accepted: 2, rejected: 0, model_sha256: "x" });

describe("Chart", () => {
  it("keeps every point but labels at most about ten rounds", () => {
    const many = Array.from({ length: 100 }, (_, i) => round(i + 1, i / 100, 1 - i / 100));
    const { container } = render(<Chart rounds={many} />);
    expect(container.querySelectorAll("circle.point.acc")).toHaveLength(100);
    const labels = [...container.querySelectorAll("text.tick")].filter((t) => /^\d+$/.test(t.textContent ?? ""));
    expect(labels.length).toBeLessThanOrEqual(11);
  });

  it("draws one accuracy point per round and names the latest figures", () => {
    const { container } = render(<Chart rounds={[round(1, 0.5, 1.2), round(2, 0.7, 0.8), round(3, 0.9, 0.3)]} />);
    expect(container.querySelectorAll("circle.point.acc")).toHaveLength(3);
    const img = screen.getByRole("img");
    expect(img.getAttribute("aria-label")).toContain("3 rounds; round 3: accuracy 90.0%");
    expect(screen.getByRole("table", { name: /accuracy and loss per round/i })).toBeTruthy();
  });
});

const schema: SpecSchema = { properties: {
  model: { type: "string", default: "mlp" },
  rounds: { type: "integer", default: 20, minimum: 1 },
  rule: { type: "string", enum: ["fedavg", "median"], default: "fedavg" },
  model_params: { type: "object", default: {} },
} };

describe("toSpec", () => {
  it("sends only changed fields, typed by the schema", () => {
    const spec = toSpec(schema, { model: "mlp", rounds: "3", rule: "median", model_params: '{"hidden":[8]}' });
    expect(spec).toEqual({ rounds: 3, rule: "median", model_params: { hidden: [8] } });
    // unparsable text goes to the daemon as typed, so its message is the one shown
    expect(toSpec(schema, { rounds: "many", model_params: "{bad" })).toEqual({ rounds: "many", model_params: "{bad" });
  });
});

describe("SubmitForm", () => {
  it("shows the daemon's validation message on the field it names", async () => {
    const sent: Record<string, unknown>[] = [];
    const submit = async (spec: Record<string, unknown>) => {
      sent.push(spec);
      throw new RpcError(-32602, "invalid params: spec.rounds: Input should be greater than or equal to 1",
        { param: "spec.rounds" });
    };
    render(<SubmitForm onSubmitted={() => {}} loadSchema={async () => schema} submit={submit} />);
    const rounds = await screen.findByLabelText("rounds");
    fireEvent.change(rounds, { target: { value: "0" } });
    fireEvent.click(screen.getByRole("button", { name: "Submit job" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toBe("invalid params: spec.rounds: Input should be greater than or equal to 1");
    await waitFor(() => expect(rounds.getAttribute("aria-invalid")).toBe("true"));
    expect(rounds.getAttribute("aria-describedby")).toBe(alert.id);
    expect(sent).toEqual([{ rounds: 0 }]);
  });

  it("asks for the schema once, so a re-render keeps what the user typed", async () => {
    let calls = 0;
    const load = async () => { calls += 1; return schema; };
    const { rerender } = render(<SubmitForm onSubmitted={() => {}} loadSchema={load} />);
    const rounds = await screen.findByLabelText("rounds");
    fireEvent.change(rounds, { target: { value: "7" } });
    rerender(<SubmitForm onSubmitted={() => {}} loadSchema={async () => { calls += 1; return schema; }} />);
    expect(calls).toBe(1);
    expect((screen.getByLabelText("rounds") as HTMLInputElement).value).toBe("7");
  });
});

describe("RoundTables", () => {
  it("shows each trainer's verdict per round and the rejected updates with reason codes", () => {
    const A = "12D3KooWAAAAAAAAaaaa", B = "12D3KooWBBBBBBBBbbbb";
    const r1 = { ...round(1, 0.5, 1), trainers: [A], rejected_reasons: { ["f".repeat(64)]: "non_finite" },
      updates: [
        { peer: A, slot: 0, sha256: "e".repeat(64), samples: 10, verdict: "accepted", reason: "" },
        { peer: B, slot: 1, sha256: "f".repeat(64), samples: 10, verdict: "rejected", reason: "non_finite" },
      ] };
    const job = { job_id: "j", state: "running", phase: "training", round: 2, completed_round: 1, rounds: 3,
      model: "mlp", dataset: "digits", rule: "fedavg", model_sha256: "x", error: "", offers: 2, rejected: 1,
      trainers: { [A]: "training", [B]: "dropped" }, history: [r1] };
    render(<RoundTables job={job} />);
    const rows = screen.getByRole("table", { name: "Each trainer's part in each round" }).querySelectorAll("tbody tr");
    expect([...rows].map((r) => [...r.children].map((c) => c.textContent))).toEqual([
      ["12D3KooW…aaaa", "accepted", "training"],
      ["12D3KooW…bbbb", "rejected: non_finite", "dropped"],
    ]);
    const rejected = screen.getByRole("table", { name: "Updates the owner rejected, with the reason code" });
    expect(rejected.textContent).toContain("non_finite");
    expect(rejected.textContent).toContain("12D3KooW…bbbb");
  });
});
