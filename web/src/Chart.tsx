import type { RoundRecord } from "./types";

const W = 640, H = 260, PAD = { l: 48, r: 52, t: 16, b: 36 };

/**
 * Test accuracy (left axis, 0-1) and loss (right axis) per round, as SVG, with a
 * table of the same figures for screen readers (the SVG itself is one labelled image).
 */
export function Chart({ rounds }: { rounds: RoundRecord[] }) {
  const n = rounds.length;
  const maxRound = Math.max(1, ...rounds.map((r) => r.round));
  const maxLoss = Math.max(1e-9, ...rounds.map((r) => r.test_loss));
  const x = (round: number) => PAD.l + ((round - (n > 1 ? 1 : 0)) / Math.max(1, maxRound - (n > 1 ? 1 : 0))) * (W - PAD.l - PAD.r);
  const yAcc = (a: number) => PAD.t + (1 - a) * (H - PAD.t - PAD.b);
  const yLoss = (l: number) => PAD.t + (1 - l / maxLoss) * (H - PAD.t - PAD.b);
  const path = (f: (r: RoundRecord) => number) =>
    rounds.map((r, i) => `${i ? "L" : "M"}${x(r.round).toFixed(1)},${f(r).toFixed(1)}`).join(" ");
  const last = rounds[n - 1];
  const step = Math.max(1, Math.ceil(maxRound / 10)); // at most ~10 round labels
  const label = n
    ? `Accuracy and loss over ${n} round${n > 1 ? "s" : ""}; round ${last.round}: accuracy ${(last.test_accuracy * 100).toFixed(1)}%, loss ${last.test_loss.toFixed(3)}`
    : "No round has finished yet";
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label} data-testid="curve">
        <line className="axis" x1={PAD.l} y1={H - PAD.b} x2={W - PAD.r} y2={H - PAD.b} />
        <line className="axis" x1={PAD.l} y1={PAD.t} x2={PAD.l} y2={H - PAD.b} />
        {[0, 0.25, 0.5, 0.75, 1].map((a) => (
          <g key={a}>
            <line className="grid" x1={PAD.l} x2={W - PAD.r} y1={yAcc(a)} y2={yAcc(a)} />
            <text className="tick acc" x={PAD.l - 6} y={yAcc(a) + 4} textAnchor="end">{a * 100}%</text>
            {n > 0 && <text className="tick loss" x={W - PAD.r + 6} y={yAcc(a) + 4}>{(a * maxLoss).toFixed(2)}</text>}
          </g>
        ))}
        {rounds.filter((r, i) => i === n - 1 || r.round % step === 0 || n <= 12).map((r) => (
          <text key={r.round} className="tick" x={x(r.round)} y={H - PAD.b + 16} textAnchor="middle">{r.round}</text>
        ))}
        <text className="tick" x={(W + PAD.l - PAD.r) / 2} y={H - 4} textAnchor="middle">round</text>
        <path className="line acc" d={path((r) => yAcc(r.test_accuracy))} />
        <path className="line loss" d={path((r) => yLoss(r.test_loss))} />
        {rounds.map((r) => (
          <circle key={`a${r.round}`} className="point acc" data-round={r.round} cx={x(r.round)} cy={yAcc(r.test_accuracy)} r={4} />
        ))}
        {rounds.map((r) => (
          <rect key={`l${r.round}`} className="point loss" x={x(r.round) - 3} y={yLoss(r.test_loss) - 3} width={6} height={6} />
        ))}
      </svg>
      <figcaption>
        <span className="key acc">● test accuracy</span> <span className="key loss">■ test loss</span>
      </figcaption>
      <table className="sr-only">
        <caption>Test accuracy and loss per round</caption>
        <thead><tr><th scope="col">Round</th><th scope="col">Accuracy</th><th scope="col">Loss</th></tr></thead>
        <tbody>
          {rounds.map((r) => (
            <tr key={r.round}><td>{r.round}</td><td>{r.test_accuracy.toFixed(4)}</td><td>{r.test_loss.toFixed(4)}</td></tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
