// Small inline SVG sparklines, and quantiles from Prometheus histogram buckets.

const SVG = "http://www.w3.org/2000/svg";  // the SVG namespace name, not a place fetched
const POINTS = 60;

export class Sparkline {
  constructor(parent, label, format) {
    this.values = [];
    this.format = format;
    this.root = document.createElement("figure");
    this.root.className = "chart";
    this.root.style.margin = "0";
    const caption = document.createElement("figcaption");
    caption.className = "label";
    const name = document.createElement("span");
    name.textContent = label;
    this.valueEl = document.createElement("span");
    this.valueEl.className = "value";
    this.valueEl.textContent = "–";
    caption.append(name, this.valueEl);
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", label);
    this.line = document.createElementNS(SVG, "polyline");
    this.svg.append(this.line);
    this.root.append(caption, this.svg);
    parent.append(this.root);
  }

  // A new point (null: nothing measured this time, the line keeps its last value).
  push(value) {
    const last = this.values.length ? this.values[this.values.length - 1] : 0;
    this.values.push(value ?? last);
    if (this.values.length > POINTS) this.values.shift();
    this.valueEl.textContent = value === null || value === undefined ? this.valueEl.textContent : this.format(value);
    // The points span the whole width however many there are yet; the top is the largest.
    const top = Math.max(...this.values, 1e-9);
    const width = Math.max(this.values.length - 1, 1);
    this.svg.setAttribute("viewBox", `0 0 ${width} 100`);
    this.line.setAttribute("points", this.values
      .map((v, i) => `${i},${(100 - (v / top) * 96 - 2).toFixed(1)}`).join(" "));
  }
}

// Prometheus' histogram_quantile over [[upper bound, cumulative count], ...].
export function quantile(buckets, q) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (bound === "+Inf") return lower;
      if (count === below) return bound;
      return lower + (bound - lower) * (rank - below) / (count - below);
    }
    lower = bound === "+Inf" ? lower : bound;
    below = count;
  }
  return lower;
}

// The observations between two polls: bucket by bucket differences.
export function bucketDelta(now, before) {
  if (!before || before.length !== now.length) return now;
  return now.map(([bound, count], i) => [bound, count - before[i][1]]);
}
