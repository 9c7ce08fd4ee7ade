/** Pure view-model helpers of the sidebar (formatting, the Run form's values), tested with jest. */

import type { IModelVersion, IParameterSpec, IRunSummary, IStageDetail, IStartRun, RunStatus } from './api';

export const FINAL_STATUSES: ReadonlySet<string> = new Set([
  'succeeded',
  'failed',
  'timed_out',
  'kernel_died',
  'cancelled',
  'blocked',
  'damaged'
]);

const ICONS: Record<RunStatus, string> = {
  queued: '◷',
  running: '▶',
  succeeded: '✔',
  failed: '✖',
  timed_out: '⌛',
  kernel_died: '☠',
  cancelled: '■',
  blocked: '⛔',
  damaged: '⚠'
};

export function statusIcon(status: string): string {
  return ICONS[status as RunStatus] ?? '?';
}

export function isResumable(run: Pick<IRunSummary, 'status'>): boolean {
  return ['failed', 'timed_out', 'kernel_died', 'cancelled', 'blocked'].includes(run.status);
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '–';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  return minutes < 60 ? `${minutes} min ${rest} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatShare(share: number | null | undefined): string {
  return share === null || share === undefined ? '–' : `${Math.round(share * 100)}%`;
}

export function formatMetric(value: number | null | undefined): string {
  return value === null || value === undefined ? '–' : value.toFixed(4);
}

/**
 * A version's value of ``metric``: the gate's holdout metric (``metrics``, or the ``ct.metric.*`` tag a
 * server before that merge sends), null when the version has none.
 */
export function versionMetric(version: Pick<IModelVersion, 'metrics' | 'tags'>, metric: string): number | null {
  const value = version.metrics?.[metric];
  if (typeof value === 'number' && isFinite(value)) {
    return value;
  }
  const raw = version.tags?.[`ct.metric.${metric}`];
  if (raw === undefined || raw === null || String(raw).trim() === '') {
    return null;
  }
  const parsed = Number(raw);
  return isFinite(parsed) ? parsed : null;
}

/** The type shown next to a parameter's name: nothing when papermill inferred none ("", or "None"). */
export function typeLabel(spec: Pick<IParameterSpec, 'type'>): string {
  const type = (spec.type ?? '').trim();
  return type === '' || type === 'None' || type === 'NoneType' ? '' : type;
}

export function outcomeText(run: Pick<IRunSummary, 'outcome' | 'version'>): string {
  if (run.outcome === 'promoted') {
    return run.version ? `v${run.version} promoted` : 'promoted';
  }
  if (run.outcome === 'rejected') {
    return run.version ? `v${run.version} rejected` : 'rejected';
  }
  return '';
}

/** Value typed in the Run form: JSON if it parses (numbers, booleans, null, lists), else the text. */
export function parseValue(text: string): unknown {
  const trimmed = text.trim();
  try {
    return JSON.parse(trimmed);
  } catch {
    return text;
  }
}

/** The text a form field starts with: the ct.yaml value, else the notebook's default (Python source). */
export function initialText(spec: IParameterSpec): string {
  if (spec.configured !== null && spec.configured !== undefined) {
    return spec.configured;
  }
  const source = (spec.default ?? '').trim();
  if (source === 'None') {
    return 'null';
  }
  if (source === 'True' || source === 'False') {
    return source.toLowerCase();
  }
  const quoted = /^(['"])(.*)\1$/.exec(source);
  return quoted ? JSON.stringify(quoted[2]) : source;
}

/**
 * Body of "start a run" from the form: only the fields the user changed are sent, so the
 * runner keeps ct.yaml and notebook defaults for everything else.
 */
export function startRunBody(
  pipeline: string,
  fields: { stage: string; name: string; initial: string; text: string }[],
  reason: string
): IStartRun {
  const parameters: Record<string, Record<string, unknown>> = {};
  for (const field of fields) {
    if (field.text.trim() === field.initial.trim()) {
      continue;
    }
    (parameters[field.stage] ??= {})[field.name] = parseValue(field.text);
  }
  const body: IStartRun = { pipeline };
  if (Object.keys(parameters).length > 0) {
    body.parameters = parameters;
  }
  if (reason.trim()) {
    body.reason = reason.trim();
  }
  return body;
}

/** A fresh Idempotency-Key for one click of "Start" (a retried click reuses it). */
export function newIdempotencyKey(): string {
  const random = Math.random().toString(16).slice(2, 10);
  return `ctn-${Date.now().toString(16)}-${random}`;
}

/** Points of the drift-share-per-batch chart, scaled to a width x height box (SVG polyline). */
export function sparkline(values: number[], width: number, height: number): string {
  if (values.length === 0) {
    return '';
  }
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  return values
    .map((v, i) => {
      const clamped = Math.max(0, Math.min(1, v));
      return `${(i * step).toFixed(1)},${(height - clamped * height).toFixed(1)}`;
    })
    .join(' ');
}

/** One line per batch the data gate kept out of a run: where it went and its first violation. */
export function quarantineLines(stages: Pick<IStageDetail, 'outputs'>[]): string[] {
  const lines: string[] = [];
  for (const stage of stages) {
    const items = stage.outputs?.quarantined;
    if (!Array.isArray(items)) {
      continue;
    }
    for (const item of items as Record<string, unknown>[]) {
      const violations = Array.isArray(item.violations) ? (item.violations as unknown[]) : [];
      const where = item.moved_to ? `moved to ${String(item.moved_to)}` : 'kept out of the run';
      const first = violations.length ? String(violations[0]) : 'failed the data gate';
      lines.push(`batch ${String(item.batch)} quarantined (${where}): ${first}`);
    }
  }
  return lines;
}

/** A trigger decision in one line, with how the run it started ended (blocked, and why). */
export function decisionText(d: Record<string, unknown>): string {
  const head = `${String(d.evaluated_at ?? '')} ${String(d.trigger ?? '')}: ${d.fired ? 'fired' : 'not fired'}`;
  const action = d.fired && d.action ? `, ${String(d.action)}` : '';
  const run = d.run as Record<string, unknown> | null | undefined;
  const result = run && run.text ? ` → run ${String(run.text)}` : '';
  return `${head}${action} ${String(d.reason ?? '')}${result}`.trim();
}
